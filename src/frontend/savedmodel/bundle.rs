//! A TensorBundle (TensorFlow's checkpoint format, a SavedModel's `variables/`):
//! `variables.index`, a table from each tensor's key to its [`BundleEntryProto`]
//! (the empty key holds the [`BundleHeaderProto`]), and the data shards
//! `variables.data-NNNNN-of-MMMMM`, which hold each tensor's bytes at the entry's
//! offset and size, checked by its masked crc32c (`tensor_bundle.cc`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use prost::Message;

use super::table;
use crate::error::Error;
use crate::frontend::tf::proto::tensorflow::{BundleEntryProto, BundleHeaderProto, DataType};
use crate::frontend::tf::proto::{TensorShapeProto, dtype_name};

/// An open bundle: its index, read and checked; shards are read when a tensor
/// of theirs is.
pub struct Bundle {
    prefix: PathBuf,
    num_shards: i32,
    entries: BTreeMap<String, BundleEntryProto>,
    shards: RefCell<BTreeMap<i32, Vec<u8>>>,
}

/// A tensor of the bundle: its dtype, shape and little-endian bytes.
pub struct Stored {
    pub dtype: DataType,
    pub shape: TensorShapeProto,
    pub bytes: Vec<u8>,
}

impl Bundle {
    /// The index file of the bundle at `prefix` (`DIR/variables/variables`).
    pub fn index_path(prefix: &Path) -> PathBuf {
        with_suffix(prefix, ".index")
    }

    /// Open the bundle whose files start with `prefix`.
    pub fn open(prefix: &Path) -> Result<Bundle> {
        let index = Bundle::index_path(prefix);
        let bytes = std::fs::read(&index)
            .map_err(|e| Error::invalid_file(&index, format!("cannot read the variables' index: {e}")))?;
        Bundle::from_index(prefix, &bytes)
    }

    /// The bundle at `prefix` whose index file holds `bytes` (the data shards
    /// are read when a tensor is).
    pub fn from_index(prefix: &Path, bytes: &[u8]) -> Result<Bundle> {
        let index = Bundle::index_path(prefix);
        let table =
            table::read(bytes).map_err(|e| Error::invalid_file(&index, format!("not a TensorBundle index: {e}")))?;
        let bad = |reason: String| Error::invalid_file(&index, reason);
        let header = table.get(&b""[..]).ok_or_else(|| bad("the index has no header (its empty key)".into()))?;
        let header = BundleHeaderProto::decode(header.as_slice())
            .map_err(|e| bad(format!("the header is not a BundleHeaderProto: {e}")))?;
        if header.endianness != 0 {
            return Err(bad("the bundle was written big-endian; tfe-run reads little-endian bundles".into()));
        }
        if !(1..=100_000).contains(&header.num_shards) {
            return Err(bad(format!("the header declares {} data shards", header.num_shards)));
        }
        let mut entries = BTreeMap::new();
        for (key, value) in table.iter().filter(|(k, _)| !k.is_empty()) {
            let key = String::from_utf8(key.clone()).map_err(|_| bad("a key is not UTF-8".into()))?;
            let entry = BundleEntryProto::decode(value.as_slice())
                .map_err(|e| bad(format!("the entry of `{key}` is not a BundleEntryProto: {e}")))?;
            entries.insert(key, entry);
        }
        Ok(Bundle { prefix: prefix.to_path_buf(), num_shards: header.num_shards, entries, shards: RefCell::default() })
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The keys of the bundle, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    fn shard_path(&self, shard: i32) -> PathBuf {
        with_suffix(&self.prefix, &format!(".data-{shard:05}-of-{:05}", self.num_shards))
    }

    /// The tensor stored under `key`, its checksum verified; `what` names it
    /// for messages (the variable it is the value of).
    pub fn tensor(&self, key: &str, what: &str) -> Result<Stored> {
        let index = Bundle::index_path(&self.prefix);
        let entry = self.entries.get(key).ok_or_else(|| {
            Error::invalid_file(&index, format!("{what} has no value: the bundle holds no key `{key}`"))
        })?;
        if !entry.slices.is_empty() {
            return Err(Error::unsupported(format!(
                "{what} (`{key}` in `{}`) is a partitioned variable saved in {} slices; tfe-run reads whole variables \
                 only: save the model without a variable partitioner",
                index.display(),
                entry.slices.len()
            )));
        }
        if !(0..self.num_shards).contains(&entry.shard_id) {
            return Err(Error::invalid_file(
                &index,
                format!("`{key}` is in shard {}, but the bundle has {} shard(s)", entry.shard_id, self.num_shards),
            ));
        }
        let shard = self.shard_path(entry.shard_id);
        let mut shards = self.shards.borrow_mut();
        if let std::collections::btree_map::Entry::Vacant(slot) = shards.entry(entry.shard_id) {
            let bytes = std::fs::read(&shard).map_err(|e| {
                Error::invalid_file(&shard, format!("cannot read the data shard that holds {what} (`{key}`): {e}"))
            })?;
            slot.insert(bytes);
        }
        let data = shards.get(&entry.shard_id).map_or(&[][..], Vec::as_slice);
        let range = usize::try_from(entry.offset)
            .ok()
            .zip(usize::try_from(entry.size).ok())
            .and_then(|(o, s)| Some(o..o.checked_add(s)?))
            .filter(|r| r.end <= data.len());
        let bytes = range.and_then(|r| data.get(r)).ok_or_else(|| {
            Error::invalid_file(
                &shard,
                format!(
                    "{what} (`{key}`) is at bytes {}..+{}, past the end of the shard ({} bytes): it is truncated",
                    entry.offset,
                    entry.size,
                    data.len()
                ),
            )
        })?;
        let dtype = DataType::try_from(entry.dtype).unwrap_or(DataType::DtInvalid);
        let shape = entry.shape.clone().unwrap_or_default();
        let crc = if dtype == DataType::DtString {
            let count = shape.dim.iter().try_fold(1usize, |n, d| n.checked_mul(usize::try_from(d.size).ok()?));
            count.filter(|&c| c <= bytes.len()).and_then(|c| string_crc(bytes, c))
        } else {
            Some(crc32c::crc32c(bytes))
        };
        if crc.map(table::mask) != Some(entry.crc32c) {
            return Err(Error::invalid_file(
                &shard,
                format!(
                    "{what} (`{key}`, bytes {}..+{}) fails its checksum: the shard is corrupt",
                    entry.offset, entry.size
                ),
            ));
        }
        Ok(Stored { dtype, shape, bytes: bytes.to_vec() })
    }

    /// The one string of a scalar string tensor (the checkpoint's object graph).
    pub fn scalar_string(&self, key: &str, what: &str) -> Result<Vec<u8>> {
        let stored = self.tensor(key, what)?;
        let index = Bundle::index_path(&self.prefix);
        if stored.dtype != DataType::DtString || !stored.shape.dim.is_empty() {
            return Err(Error::invalid_file(
                &index,
                format!(
                    "`{key}` is {} of rank {}, not a string scalar",
                    dtype_name(stored.dtype),
                    stored.shape.dim.len()
                ),
            ));
        }
        let (len, at) =
            varint64(&stored.bytes).ok_or_else(|| Error::invalid_file(&index, format!("`{key}` is malformed")))?;
        // The length, then the 4-byte checksum of the lengths, then the bytes.
        let start = at.checked_add(4);
        let end = start.and_then(|s| s.checked_add(usize::try_from(len).ok()?));
        start
            .zip(end)
            .and_then(|(s, e)| stored.bytes.get(s..e))
            .map(<[u8]>::to_vec)
            .ok_or_else(|| Error::invalid_file(&index, format!("`{key}` is shorter than its length")))
    }
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn varint64(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f).checked_shl(7u32.checked_mul(u32::try_from(i).ok()?)?)?;
        if b & 0x80 == 0 {
            return Some((value, i.checked_add(1)?));
        }
    }
    None
}

/// The checksum of a string tensor of `count` elements as `WriteStringTensor`
/// computes it: over each length as a little-endian u32 (u64 when larger), then
/// the 4-byte checksum of the lengths as written, then the strings.
fn string_crc(bytes: &[u8], count: usize) -> Option<u32> {
    let mut at = 0usize;
    let mut crc = 0u32;
    for _ in 0..count {
        let (len, used) = varint64(bytes.get(at..)?)?;
        at = at.checked_add(used)?;
        crc = match u32::try_from(len) {
            Ok(l) => crc32c::crc32c_append(crc, &l.to_le_bytes()),
            Err(_) => crc32c::crc32c_append(crc, &len.to_le_bytes()),
        };
    }
    Some(crc32c::crc32c_append(crc, bytes.get(at..)?))
}
