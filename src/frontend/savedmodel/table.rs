//! The sorted string table a TensorBundle's `variables.index` is: LevelDB's
//! table format, as TensorFlow's own copy writes it (`tsl/lib/io/table_builder.cc`,
//! `format.cc`, `block_builder.cc`).
//!
//! ```text
//! file   := data block* · metaindex block · index block · footer (48 bytes)
//! footer := metaindex handle · index handle (varint64 offset, varint64 size each),
//!           zero padding to 40 bytes · magic 0xdb4775248b80fb57 (fixed64 LE)
//! block  := entry* · restart (u32 LE)* · restart count (u32 LE), then a trailer:
//!           compression type (1 byte: 0 = none) · masked crc32c of block + type
//! entry  := varint32 shared · varint32 unshared · varint32 value length ·
//!           key[shared..] (unshared bytes) · value
//! ```
//! The index block maps each data block's last key to its handle. The whole
//! table is read into a map: a bundle's index holds one small entry per variable.
//!
//! Not the `sstable` crate: these bytes come from others, and this reader checks
//! every length against what is there and every block's checksum before reading
//! it, which is a few dozen lines over bytes already in memory.

use std::collections::BTreeMap;

/// The footer's magic number (`kTableMagicNumber`).
const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
const FOOTER: usize = 48;
/// Compression type byte and masked crc32c after every block.
const TRAILER: usize = 5;

/// TensorFlow's masked CRC (`crc32c::Mask`): a CRC of bytes that contain CRCs.
pub fn mask(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// A cursor over bytes from others: every read is checked.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    fn varint(&mut self, max_bits: u32) -> Result<u64, String> {
        let mut value: u64 = 0;
        let mut shift = 0u32;
        loop {
            let &byte = self.bytes.get(self.at).ok_or("a varint runs past the end of its block")?;
            self.at = self.at.saturating_add(1);
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                if shift >= max_bits || (max_bits < 64 && value >> max_bits != 0) {
                    return Err("a varint is too large".into());
                }
                return Ok(value);
            }
            shift = shift.saturating_add(7);
            if shift >= max_bits {
                return Err("a varint is too long".into());
            }
        }
    }

    fn len(&mut self) -> Result<usize, String> {
        usize::try_from(self.varint(32)?).map_err(|_| "a length does not fit in memory".to_string())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("an entry runs past its block")?;
        let out = self.bytes.get(self.at..end).ok_or("an entry runs past its block")?;
        self.at = end;
        Ok(out)
    }
}

/// Where a block is: offset and size in the file.
#[derive(Debug, Clone, Copy)]
struct Handle {
    offset: usize,
    size: usize,
}

impl Handle {
    fn read(r: &mut Reader<'_>) -> Result<Handle, String> {
        let offset = usize::try_from(r.varint(64)?).map_err(|_| "a block offset is too large")?;
        let size = usize::try_from(r.varint(64)?).map_err(|_| "a block size is too large")?;
        Ok(Handle { offset, size })
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, String> {
    let end = at.checked_add(4).ok_or("offset overflow")?;
    let b: [u8; 4] = bytes.get(at..end).and_then(|s| s.try_into().ok()).ok_or("a block is too short")?;
    Ok(u32::from_le_bytes(b))
}

/// The contents of the block at `h`, its checksum verified.
fn block<'a>(file: &'a [u8], h: Handle, what: &str) -> Result<&'a [u8], String> {
    let end = h.offset.checked_add(h.size).ok_or_else(|| format!("the {what} block's size overflows"))?;
    let trailer_end = end.checked_add(TRAILER).ok_or_else(|| format!("the {what} block's size overflows"))?;
    let with_type = file
        .get(h.offset..end.saturating_add(1))
        .filter(|_| trailer_end <= file.len())
        .ok_or_else(|| format!("the {what} block (bytes {}..{trailer_end}) is past the end of the file", h.offset))?;
    let stored = u32_at(file, end.saturating_add(1))?;
    if mask(crc32c::crc32c(with_type)) != stored {
        return Err(format!("the {what} block at byte {} fails its checksum", h.offset));
    }
    match with_type.last() {
        Some(0) => Ok(with_type.get(..h.size).unwrap_or_default()),
        Some(t) => Err(format!(
            "the {what} block at byte {} is compressed (type {t}); TensorFlow writes bundle indexes uncompressed",
            h.offset
        )),
        None => Err(format!("the {what} block is empty")),
    }
}

/// Every (key, value) of a block, in order.
/// A table entry: key and value.
type Entry = (Vec<u8>, Vec<u8>);

fn entries(block: &[u8], what: &str) -> Result<Vec<Entry>, String> {
    let n = block.len();
    let restarts = u32_at(block, n.checked_sub(4).ok_or_else(|| format!("the {what} block is too short"))?)?;
    let restart_bytes = usize::try_from(restarts).ok().and_then(|r| r.checked_mul(4)).and_then(|b| b.checked_add(4));
    let data_end = restart_bytes
        .and_then(|b| n.checked_sub(b))
        .ok_or_else(|| format!("the {what} block declares {restarts} restart points, more than it holds"))?;
    let mut r = Reader::new(block.get(..data_end).unwrap_or_default());
    let mut out = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    while r.at < data_end {
        let shared = r.len()?;
        let unshared = r.len()?;
        let value_len = r.len()?;
        if shared > key.len() {
            return Err(format!("an entry of the {what} block shares {shared} bytes of a {}-byte key", key.len()));
        }
        key.truncate(shared);
        key.extend_from_slice(r.take(unshared)?);
        let value = r.take(value_len)?.to_vec();
        out.push((key.clone(), value));
    }
    Ok(out)
}

/// Read a whole table: every key and its value. Errors say what is wrong with
/// the file (the caller names it).
pub fn read(file: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let start = file
        .len()
        .checked_sub(FOOTER)
        .ok_or_else(|| format!("{} bytes is too short for a table (its footer alone is {FOOTER})", file.len()))?;
    let footer = file.get(start..).unwrap_or_default();
    let magic_at = FOOTER.saturating_sub(8);
    let magic: [u8; 8] = footer.get(magic_at..).and_then(|m| m.try_into().ok()).ok_or("no footer")?;
    if u64::from_le_bytes(magic) != MAGIC {
        return Err("it does not end with a table footer (truncated, or not a TensorBundle index)".into());
    }
    let mut r = Reader::new(footer.get(..magic_at).unwrap_or_default());
    let _metaindex = Handle::read(&mut r)?;
    let index = Handle::read(&mut r)?;
    let mut table = BTreeMap::new();
    let mut last: Option<Vec<u8>> = None;
    for (_, handle) in entries(block(file, index, "index")?, "index")? {
        let h = Handle::read(&mut Reader::new(&handle))?;
        for (key, value) in entries(block(file, h, "data")?, "data")? {
            if last.as_ref().is_some_and(|l| *l >= key) {
                return Err("its keys are not in increasing order".into());
            }
            last = Some(key.clone());
            table.insert(key, value);
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_is_tensorflows() {
        // tsl/lib/hash/crc32c.h: ((crc >> 15) | (crc << 17)) + 0xa282ead8, written out.
        assert_eq!(mask(0), 0xa282_ead8);
        assert_eq!(mask(0x0000_8000), 0x0000_0001u32.wrapping_add(0xa282_ead8));
        assert_eq!(mask(0x0000_0001), 0x0002_0000u32.wrapping_add(0xa282_ead8));
    }

    #[test]
    fn short_or_footless_bytes_are_refused_not_read() {
        assert!(read(b"").unwrap_err().contains("too short"));
        assert!(read(&[0u8; 60]).unwrap_err().contains("footer"));
    }
}
