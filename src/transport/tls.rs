//! Mutually authenticated TLS between the parties (rustls, ring provider).
//!
//! Every party holds a certificate for its own name (`server0`, `server1`,
//! `crypto-producer`, `model-owner`, `client`) signed by the cluster's CA. A party
//! that dials checks that the peer's certificate is for the party it meant to
//! reach; a party that accepts checks the certificate chain (rustls) and then that
//! the certificate is for the party the peer says it is ([`check_peer`]).
//!
//! A certificate folder holds `ca.pem` and, per party, `NAME.pem` and `NAME.key`.
//! [`generate_with`] makes one for development (`tfe-run certs`); in production each
//! operator keeps only its own key, and the CA key stays offline.
//!
//! # Principals
//!
//! Clients and model owners are many: each may hold a certificate of its own
//! (`alice.pem`), valid for its role's name (so [`check_peer`] holds) and
//! carrying `alice.principal` as a second subject name: its principal, which a
//! server records with what it deploys or contributes ([`principal_of`]). A
//! certificate with the role's name only is the principal of that name
//! (`client`, `model-owner`).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::Party;
use crate::error::Error;

/// A party's TLS settings: how it accepts and how it dials.
#[derive(Clone)]
pub struct Identity {
    pub party: Party,
    pub acceptor: tokio_rustls::TlsAcceptor,
    pub connector: tokio_rustls::TlsConnector,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::bad_input(format!("cannot read `{}`: {e}", path.display())))
}

fn certs_in(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::bad_input(format!("`{}` is not a PEM certificate file: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::bad_input(format!("`{}` holds no certificate", path.display())));
    }
    Ok(certs)
}

/// Load `party`'s certificate and key and the cluster's CA from `dir`.
pub fn identity(dir: &Path, party: Party) -> Result<Identity> {
    identity_as(dir, party, party.name())
}

/// Load the certificate and key `NAME.pem`/`NAME.key` from `dir` (a principal's,
/// or the role's own when `name` is the party's name), to act as `party`.
pub fn identity_as(dir: &Path, party: Party, name: &str) -> Result<Identity> {
    let ca = certs_in(&dir.join("ca.pem"))?;
    let mut roots = RootCertStore::empty();
    for cert in ca {
        roots.add(cert).map_err(|e| Error::bad_file(&dir.join("ca.pem"), e.to_string()))?;
    }
    let roots = Arc::new(roots);
    let chain = certs_in(&dir.join(format!("{name}.pem")))?;
    let key_path = dir.join(format!("{name}.key"));
    check_private(&key_path)?;
    let key = PrivateKeyDer::from_pem_slice(&read(&key_path)?)
        .map_err(|e| Error::bad_input(format!("`{}` is not a PEM private key: {e}", key_path.display())))?;

    let pair = |e: rustls::Error| {
        Error::bad_arg(format!("{name}'s certificate and key in `{}`", dir.display()), e.to_string())
    };
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
        .build()
        .context("cannot build the client certificate verifier")?;
    let server = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(pair)?;
    let client = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(pair)?;
    Ok(Identity {
        party,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
    })
}

/// Refuse a key file that group or others can open: anyone on the host could
/// then act as this party.
#[cfg(unix)]
fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::bad_input(format!("cannot read `{}`: {e}", path.display())))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::bad_input(format!(
            "`{}` has mode {:03o}: a private key must be readable by its owner only; run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path) -> Result<()> {
    Ok(())
}

/// The name a dialling party expects on the certificate of `party`.
pub fn server_name(party: Party) -> Result<ServerName<'static>> {
    ServerName::try_from(party.name()).with_context(|| format!("`{}` is not a DNS name", party.name()))
}

/// Is the (already chain-verified) certificate `cert` one for `party`?
pub fn check_peer(cert: &CertificateDer<'_>, party: Party) -> Result<()> {
    let cert = webpki::EndEntityCert::try_from(cert).context("the peer's certificate cannot be parsed")?;
    cert.verify_is_valid_for_subject_name(&server_name(party)?).map_err(|_| {
        Error::party(
            party.name(),
            format!("the peer says it is {} but its certificate is not for that name", party.name()),
        )
    })
}

/// The fatal alert the peer's TLS stack sent, if that is what `err` is. In TLS
/// 1.3 the dialling side finishes its handshake before the peer checks its
/// certificate, so a refusal arrives as an alert on the next read or write.
pub fn received_alert(err: &anyhow::Error) -> Option<rustls::AlertDescription> {
    err.chain().find_map(|cause| {
        let io_inner = || cause.downcast_ref::<std::io::Error>()?.get_ref()?.downcast_ref::<rustls::Error>();
        match cause.downcast_ref::<rustls::Error>().or_else(io_inner) {
            Some(rustls::Error::AlertReceived(alert)) => Some(*alert),
            _ => None,
        }
    })
}

/// What `peer`'s `alert` tells `local`, which dialled it.
pub fn alert_text(peer: Party, local: Party, alert: rustls::AlertDescription) -> String {
    use rustls::AlertDescription as A;
    let (peer, local) = (peer.name(), local.name());
    let why = match alert {
        A::CertificateExpired => {
            format!("expired or not yet valid: check the dates of {local}'s certificate and this host's clock")
        }
        A::UnknownCA => format!("{local}'s certificate is signed by another CA than the one in {peer}'s ca.pem"),
        A::BadCertificate
        | A::UnsupportedCertificate
        | A::CertificateRevoked
        | A::CertificateUnknown
        | A::CertificateRequired
        | A::AccessDenied
        | A::DecryptError => {
            format!("expired? another CA? the certificate must be for `{local}`, signed by the cluster's CA")
        }
        other => return format!("{peer} ended the TLS connection with the alert {other:?}"),
    };
    format!("{peer} refused our TLS certificate: {alert:?} ({why})")
}

/// What a failed handshake with a dialling peer means, for the log: rustls names
/// the check that failed, this says what to do about it.
pub fn handshake_hint(err: &std::io::Error) -> Option<&'static str> {
    use rustls::CertificateError as C;
    match err.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(C::UnknownIssuer) => {
            Some("the peer's certificate is not signed by this cluster's CA (a certificate of another CA?)")
        }
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            Some("renew it, or check this host's clock")
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            Some("check its dates and this host's clock")
        }
        rustls::Error::NoCertificatesPresented => Some("the peer presented no certificate"),
        _ => None,
    }
}

/// The subject name that marks a certificate's principal.
const PRINCIPAL_SUFFIX: &str = ".principal";

/// The principal of a (verified) certificate for `party`: the name of its
/// `NAME.principal` subject name, or the party's own name if it has none.
pub fn principal_of(cert: &CertificateDer<'_>, party: Party) -> Result<String> {
    let cert = webpki::EndEntityCert::try_from(cert).context("the peer's certificate cannot be parsed")?;
    let mut names = cert.valid_dns_names().filter_map(|n| n.strip_suffix(PRINCIPAL_SUFFIX));
    match (names.next(), names.next()) {
        (None, _) => Ok(party.name().to_string()),
        (Some(name), None) => Ok(name.to_string()),
        (Some(_), Some(_)) => Err(anyhow::anyhow!("the peer's certificate names more than one principal")),
    }
}

/// Is `name` a principal's name `certs` may issue: a DNS label (lower-case
/// letters, digits, `-`), and not a party's own name (a certificate file of that
/// name is the party's) nor `insecure` (what every peer is without TLS)?
pub fn check_principal_name(name: &str) -> Result<()> {
    let label = !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !label {
        return Err(Error::bad_input(format!(
            "`{name}` is not a principal's name: use 1 to 63 lower-case letters, digits and inner `-`"
        )));
    }
    if Party::ALL.iter().any(|p| p.name() == name) || name == "insecure" || name == "ca" {
        return Err(Error::bad_input(format!("`{name}` is reserved: choose another principal's name")));
    }
    Ok(())
}

/// Make a development CA and a certificate and key per party in `dir`, and for
/// each `(role, name)` of `principals` a certificate and key `NAME.pem`/`NAME.key`
/// for that role with the principal `name`. Unless `force`, refuse if any of
/// those files exists: a new CA cuts off every host that still holds the old
/// certificates.
pub fn generate_with(dir: &Path, principals: &[(Party, String)], force: bool) -> Result<Vec<String>> {
    let mut holders: Vec<(String, Vec<String>)> =
        Party::ALL.iter().map(|p| (p.name().to_string(), vec![p.name().to_string()])).collect();
    for (role, name) in principals {
        check_principal_name(name)?;
        if holders.iter().any(|(file, _)| file == name) {
            return Err(Error::bad_input(format!("principal `{name}` is named twice")));
        }
        holders.push((name.clone(), vec![role.name().to_string(), format!("{name}{PRINCIPAL_SUFFIX}")]));
    }
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    if !force {
        let files = std::iter::once("ca.pem".to_string())
            .chain(holders.iter().flat_map(|(name, _)| [format!("{name}.pem"), format!("{name}.key")]));
        let existing: Vec<String> = files
            .filter(|f| dir.join(f).symlink_metadata().is_ok())
            .map(|f| format!("`{}`", dir.join(f).display()))
            .collect();
        if let Some(first) = existing.first() {
            let more = match existing.len().saturating_sub(1) {
                0 => String::new(),
                n => format!(" (and {n} more of the files `certs` writes)"),
            };
            return Err(Error::bad_input(format!(
                "{first} already exists{more}: pass --force to replace the CA and every key (hosts with the \
                 old certificates can then no longer join)"
            )));
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    let now = time::OffsetDateTime::now_utc();
    let validity = |p: &mut CertificateParams| {
        p.not_before = now.saturating_sub(time::Duration::days(1));
        p.not_after = now.saturating_add(time::Duration::days(365));
    };

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(DnType::CommonName, "tfe-run development CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut written = vec![write_file(dir, "ca.pem", ca_cert.pem().as_bytes(), false)?];

    for (name, subject_names) in &holders {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(subject_names.clone())?;
        params.distinguished_name.push(DnType::CommonName, name.as_str());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        // Every party both accepts and dials.
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params);
        let cert = params.signed_by(&key, &issuer)?;
        written.push(write_file(dir, &format!("{name}.pem"), cert.pem().as_bytes(), false)?);
        written.push(write_file(dir, &format!("{name}.key"), key.serialize_pem().as_bytes(), true)?);
    }
    // The CA key is not written: a development cluster is re-made, not extended,
    // and a CA key left lying around could sign a certificate for any party.
    Ok(written)
}

fn write_file(dir: &Path, name: &str, bytes: &[u8], secret: bool) -> Result<String> {
    use std::io::Write;
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    // A key for its owner only; a certificate (above all ca.pem, the trust
    // anchor) for everyone to read and only its owner to replace.
    #[cfg(unix)]
    let mode = if secret { 0o600 } else { 0o644 };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    let mut file = options.open(&path).with_context(|| format!("cannot write `{}`", path.display()))?;
    // The mode above applies only to a new file, and through the umask: set it,
    // before the key is written, also on a file that existed.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the permissions of `{}`", path.display()))?;
    }
    let _ = secret;
    file.write_all(bytes).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(dir: &Path, name: &str) -> CertificateDer<'static> {
        certs_in(&dir.join(format!("{name}.pem"))).unwrap().remove(0)
    }

    #[test]
    fn a_principals_certificate_is_valid_for_its_role_and_names_the_principal() {
        let dir = tempfile::tempdir().unwrap();
        let principals = [(Party::Client, "alice".to_string()), (Party::ModelOwner, "acme".to_string())];
        let written = generate_with(dir.path(), &principals, false).unwrap();
        assert!(written.contains(&"alice.key".to_string()) && written.contains(&"acme.pem".to_string()));
        let alice = cert(dir.path(), "alice");
        check_peer(&alice, Party::Client).unwrap();
        assert!(check_peer(&alice, Party::ModelOwner).is_err(), "a client principal is no model owner");
        assert_eq!(principal_of(&alice, Party::Client).unwrap(), "alice");
        let acme = cert(dir.path(), "acme");
        check_peer(&acme, Party::ModelOwner).unwrap();
        assert_eq!(principal_of(&acme, Party::ModelOwner).unwrap(), "acme");
        // The role's own certificate is the principal of the role's name.
        assert_eq!(principal_of(&cert(dir.path(), "client"), Party::Client).unwrap(), "client");
        identity_as(dir.path(), Party::Client, "alice").unwrap();
    }

    #[test]
    fn principal_names_are_labels_and_not_a_partys() {
        for bad in ["", "Alice", "a/b", "a.b", "-a", "server0", "model-owner", "client", "insecure", "ca"] {
            assert!(check_principal_name(bad).is_err(), "`{bad}` accepted");
        }
        for good in ["alice", "acme-2", "h1"] {
            check_principal_name(good).unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let twice = [(Party::Client, "bob".to_string()), (Party::ModelOwner, "bob".to_string())];
        assert!(generate_with(dir.path(), &twice, false).is_err());
    }
}
