//! Loading a plugin file, one phase per function, each failure a typed [`LoadError`].
//!
//! # Phases
//!
//! 1. [`check_trust`]: the file is inside a plugin directory, not writable by others, not a
//!    symlink leading out ([`TrustPolicy`]); done before any code of the file runs.
//! 2. [`open_library`]: the file starts like a shared library (ELF or Mach-O magic, so
//!    "not a library" and "a damaged library" are told apart), then
//!    `abi_stable::library::lib_header_from_path` maps it and finds the exported header.
//! 3. [`init_root_module`]: abi_stable checks its own ABI, the `plugbus-plugin-api` version the
//!    plugin was built with and the layout of every type reachable from the root module.
//! 4. [`check_interface`]: our interface version ([`abi_compatible`]), and the SHA-256 pins by
//!    plugin name, now that the name is known.
//! 5. [`construct`]: `new(host, config_json)`; an error or a panic there is an error.
//!
//! [`load_library`] runs phases 1 to 4 and is what [`inspect`] and the
//! [`PluginManager`](crate::PluginManager) use; the manager runs [`construct`] on the plugin's
//! own thread.
//!
//! # Never `RootModule::load_from_file`
//!
//! abi_stable's `RootModule::load_from_file`/`load_from_directory` cache one module per
//! root-module *type*: every plugin shares `PluginMod_Ref`, so the second plugin would silently
//! come back as the first. This module only uses `lib_header_from_path` and
//! `LibHeader::init_root_module`, which work per library.
//!
//! # Libraries are never unloaded
//!
//! abi_stable leaks every library it opens (unloading code with live thread-locals is
//! unsound). Every load maps a fresh private copy of the file's bytes, in a directory of its
//! own ([`open_library`]), so loading a changed file maps the new code, and nothing done to the
//! original afterwards reaches the mapped pages.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use abi_stable::library::{lib_header_from_path, LibHeader, LibraryError};
use abi_stable::std_types::RResult;
use plugbus_plugin_api::{
    abi_compatible, ConfigSchema, HostBox, PluginBox, PluginError, PluginInfo, PluginMod_Ref,
    ABI_VERSION,
};

use crate::error::{LoadError, LoadErrorKind};
use crate::probe::ProbeReport;
use crate::trust::{TrustPolicy, TrustedFile, MAX_PLUGIN_BYTES};

/// What a plugin library says about itself, read without constructing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginMeta {
    /// The declared name, unique among loaded plugins.
    pub name: String,
    /// The declared version.
    pub version: String,
    /// The one-line description.
    pub description: String,
    /// The interface version the plugin was built against.
    pub abi: (u32, u32),
    /// Built with `panic = "unwind"` (its panics can be caught at the boundary).
    pub unwind: bool,
}

impl PluginMeta {
    fn from_info(info: &PluginInfo) -> Self {
        Self {
            name: info.name.as_str().to_owned(),
            version: info.version.as_str().to_owned(),
            description: info.description.as_str().to_owned(),
            abi: (info.abi_major, info.abi_minor),
            unwind: info.unwind,
        }
    }
}

/// A plugin library that passed phases 1 to 4: mapped, checked, not yet constructed.
#[derive(Clone)]
pub struct Library {
    /// The file as given or discovered (what status reports and lifecycle events name).
    pub path: PathBuf,
    /// The private copy actually mapped (unlinked once mapped: a name for logs, not a file to
    /// open).
    pub mapped: PathBuf,
    /// The root module (`info` and `new`).
    pub module: PluginMod_Ref,
    /// What the plugin declares.
    pub meta: PluginMeta,
    /// SHA-256 of the mapped file, lowercase hex (used to notice changed files).
    pub sha256: String,
    /// The configuration schema the plugin declares (interface 0.4), if any.
    pub schema: Option<ConfigSchema>,
}

impl std::fmt::Debug for Library {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Library")
            .field("path", &self.path)
            .field("mapped", &self.mapped)
            .field("meta", &self.meta)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

/// Phase 1: the trust policy's checks, before any code of the file runs.
///
/// # Errors
/// [`LoadErrorKind::Untrusted`] with the policy's reason.
pub fn check_trust(policy: &TrustPolicy, path: &Path) -> Result<TrustedFile, LoadError> {
    policy
        .check_file(path)
        .map_err(|err| LoadError::new(path, LoadErrorKind::Untrusted(err.kind)))
}

/// Magic numbers of the shared-library formats the host can load.
const MAGICS: [[u8; 4]; 6] = [
    *b"\x7fELF",
    [0xca, 0xfe, 0xba, 0xbe], // Mach-O universal
    [0xfe, 0xed, 0xfa, 0xce], // Mach-O 32-bit, big-endian
    [0xfe, 0xed, 0xfa, 0xcf], // Mach-O 64-bit, big-endian
    [0xce, 0xfa, 0xed, 0xfe], // Mach-O 32-bit, little-endian
    [0xcf, 0xfa, 0xed, 0xfe], // Mach-O 64-bit, little-endian
];

/// Checks that the file is a library the dynamic loader may be shown: no library magic number
/// is [`LoadErrorKind::NotALibrary`]; an ELF file must pass [`crate::elf::check`] (mapping a
/// damaged one can crash `ld.so` or `SIGBUS` the process later). Mach-O files are left to the
/// dynamic loader.
fn examine(bytes: &[u8]) -> Result<(), LoadErrorKind> {
    let Some(magic) = bytes.get(..4) else {
        return Err(LoadErrorKind::NotALibrary);
    };
    if !MAGICS.iter().any(|m| m.as_slice() == magic) {
        return Err(LoadErrorKind::NotALibrary);
    }
    if magic != b"\x7fELF" {
        return Ok(());
    }
    crate::elf::check(bytes).map_err(|e| match e {
        crate::elf::ElfError::NotForThisHost(detail) => LoadErrorKind::NotLoadable { detail },
        other => LoadErrorKind::Corrupt {
            detail: other.to_string(),
        },
    })
}

/// Phase 2: map the library from a private copy of `bytes` and find its abi_stable header.
///
/// `path` names the file in errors. `bytes` are the file's contents as read once by
/// [`TrustedFile::read_bytes`]: they are checked, written to a fresh directory only the host
/// can read (`0700`, the file `0500`, named by its SHA-256), and that copy is what the dynamic
/// loader maps. Whatever happens to the original afterwards (overwritten in place by `cp`,
/// truncated, replaced) cannot touch the mapped pages, and the pins checked are the pins of the
/// bytes mapped. The copy is unlinked once mapped; the mapping stays valid.
///
/// # Errors
/// [`LoadErrorKind::NotALibrary`], [`LoadErrorKind::NotLoadable`] (an ELF file for another
/// platform), [`LoadErrorKind::Corrupt`] (also for an ELF file that fails
/// [`crate::elf::check`]: mapping it could crash the process), [`LoadErrorKind::NoRootModule`]
/// or [`LoadErrorKind::Io`].
pub fn open_library(
    path: &Path,
    bytes: &[u8],
    sha256: &str,
) -> Result<(&'static LibHeader, PathBuf), LoadError> {
    open_library_unless(path, bytes, sha256, &|_| Ok(()))
}

/// [`open_library`], except that once the probe has reported the plugin's name, `vet` may
/// refuse it (a pin by that name that does not match, a plugin disabled in the config) before
/// the host maps anything.
///
/// # Errors
/// As [`open_library`], and whatever `vet` returns.
pub fn open_library_unless(
    path: &Path,
    bytes: &[u8],
    sha256: &str,
    vet: &dyn Fn(&str) -> Result<(), LoadErrorKind>,
) -> Result<(&'static LibHeader, PathBuf), LoadError> {
    let err = |kind| LoadError::new(path, kind);
    examine(bytes).map_err(err)?;
    let io = |source| err(LoadErrorKind::Io { source });
    let dir = tempfile::Builder::new()
        .prefix("plugbus-plugin-")
        .tempdir()
        .map_err(io)?;
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).map_err(io)?;
    let copy = dir.path().join(format!("{sha256}.so"));
    {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o500)
            .open(&copy)
            .map_err(io)?;
        file.write_all(bytes).map_err(io)?;
    }
    // Mapping a library runs its initializers, and a damaged one can crash the dynamic loader:
    // a child maps these exact bytes first (when the probe is enabled), and only if it
    // survives does the host.
    match crate::probe::probe(&copy, sha256) {
        Err(failure) => {
            return Err(err(LoadErrorKind::ProbeFailed {
                reason: failure.to_string(),
            }))
        }
        // It failed cleanly in the child: not mapped here either.
        Ok(Some(ProbeReport {
            error: Some(failed),
            ..
        })) => return Err(err(failed.into_kind())),
        Ok(Some(report)) => {
            vet(&report.name).map_err(err)?;
            // An abort build's first panic would abort whichever process runs it: refused
            // before the host maps it.
            if !report.unwind {
                return Err(err(LoadErrorKind::PanicAbort { name: report.name }));
            }
        }
        Ok(None) => {}
    }
    let header = lib_header_from_path(&copy).map_err(|e| err(classify(e)));
    drop(dir);
    header.map(|h| (h, copy))
}

/// Phase 3: abi_stable's checks (its ABI, the plugin-api version, type layouts), then the
/// root module.
///
/// # Errors
/// [`LoadErrorKind::AbiVersion`], [`LoadErrorKind::AbiLayout`] or
/// [`LoadErrorKind::RootModuleInit`].
pub fn init_root_module(path: &Path, header: &LibHeader) -> Result<PluginMod_Ref, LoadError> {
    header
        .init_root_module::<PluginMod_Ref>()
        .map_err(|e| LoadError::new(path, classify(e)))
}

/// Phase 4: our interface version, then SHA-256 pins keyed by the plugin's name.
///
/// # Errors
/// [`LoadErrorKind::InterfaceVersion`], or [`LoadErrorKind::Untrusted`] for a pin mismatch.
pub fn check_interface(
    path: &Path,
    module: &PluginMod_Ref,
    pins: Option<(&TrustPolicy, &TrustedFile)>,
) -> Result<PluginMeta, LoadError> {
    let info = (module.info())();
    let meta = PluginMeta::from_info(&info);
    abi_compatible(ABI_VERSION, meta.abi).map_err(|detail| {
        LoadError::new(
            path,
            LoadErrorKind::InterfaceVersion {
                plugin: meta.abi,
                host: ABI_VERSION,
                detail,
            },
        )
    })?;
    if let Err(reason) = check_name(&meta.name) {
        let mut shown: String = meta.name.chars().take(64).collect();
        if shown.len() < meta.name.len() {
            shown.push('…');
        }
        return Err(LoadError::new(
            path,
            LoadErrorKind::InvalidName {
                name: shown,
                reason,
            },
        ));
    }
    if !meta.unwind {
        return Err(LoadError::new(
            path,
            LoadErrorKind::PanicAbort {
                name: meta.name.clone(),
            },
        ));
    }
    if let Some((policy, file)) = pins {
        policy
            .check_pin(&meta.name, file)
            .map_err(|e| LoadError::new(path, LoadErrorKind::Untrusted(e.kind)))?;
    }
    Ok(meta)
}

/// The longest plugin name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// A plugin name is what config tables, logs, metrics and the audit trail key on: 1 to
/// [`MAX_NAME_LEN`] characters of lowercase ASCII letters, digits, `-`, `_` and `.`, starting
/// with a letter or digit.
///
/// # Errors
/// Why the name is refused.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("{} bytes, more than {MAX_NAME_LEN}", name.len()));
    }
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err("only lowercase ASCII letters, digits, '-', '_' and '.', starting with a letter or digit".to_owned())
    }
}

/// Phases 1 to 4 for one file: everything short of constructing the plugin.
///
/// # Errors
/// The first phase that fails.
pub fn load_library(policy: &TrustPolicy, path: &Path) -> Result<Library, LoadError> {
    let trusted = check_trust(policy, path)?;
    load_trusted(policy, &trusted)
}

/// Phases 2 to 4 for a file that passed [`check_trust`].
///
/// # Errors
/// The first phase that fails.
pub fn load_trusted(policy: &TrustPolicy, trusted: &TrustedFile) -> Result<Library, LoadError> {
    load_trusted_unless(policy, trusted, &|_| false)
}

/// [`load_trusted`], never mapping in the host a plugin whose declared name `skip` refuses
/// (known from the probe, when it is enabled; see [`open_library_unless`]).
///
/// # Errors
/// The first phase that fails, or [`LoadErrorKind::Disabled`].
pub fn load_trusted_unless(
    policy: &TrustPolicy,
    trusted: &TrustedFile,
    skip: &dyn Fn(&str) -> bool,
) -> Result<Library, LoadError> {
    let path = trusted.requested_path();
    let untrusted =
        |e: crate::error::TrustError| LoadError::new(path, LoadErrorKind::Untrusted(e.kind));
    // The bytes are read once; every later check and the mapping use them (or their copy).
    let bytes = trusted.read_bytes().map_err(untrusted)?;
    let sha256 = trusted.sha256_hex().map_err(untrusted)?;
    // Pins by file name are checked before the library is mapped; pins by plugin name can
    // only be checked once the plugin said its name (its initializers have run by then).
    if let Some(name) = trusted.file_name() {
        if policy.pins.contains_key(name) {
            policy.check_pin("", trusted).map_err(untrusted)?;
        }
    }
    // With the probe, the name is known before the host maps anything: pins by plugin name
    // and the config's `enabled` are applied then (without it, the pin is checked below).
    let vet = |name: &str| {
        policy
            .check_pin(name, trusted)
            .map_err(|e| LoadErrorKind::Untrusted(e.kind))?;
        if skip(name) {
            return Err(LoadErrorKind::Disabled {
                name: name.to_owned(),
            });
        }
        Ok(())
    };
    let (header, mapped) = open_library_unless(path, &bytes, &sha256, &vet)?;
    drop(bytes);
    let module = init_root_module(path, header)?;
    let meta = check_interface(path, &module, Some((policy, trusted)))?;
    let schema = read_schema(path, &module, &meta)?;
    tracing::debug!(path = %path.display(), plugin = %meta.name, version = %meta.version, "plugin library loaded");
    Ok(Library {
        path: path.to_path_buf(),
        mapped,
        module,
        meta,
        sha256,
        schema,
    })
}

/// The configuration schema a plugin declares: `None` when it declares none.
///
/// # Errors
/// [`LoadErrorKind::BadSchema`]: the schema function failed or panicked, or its text is not
/// the JSON of a [`ConfigSchema`](struct@ConfigSchema).
pub fn read_schema(
    path: &Path,
    module: &PluginMod_Ref,
    meta: &PluginMeta,
) -> Result<Option<ConfigSchema>, LoadError> {
    let bad = |detail: String| {
        LoadError::new(
            path,
            LoadErrorKind::BadSchema {
                name: meta.name.clone(),
                detail,
            },
        )
    };
    let Some(read) = module.config_schema() else {
        return Ok(None);
    };
    let text = match read() {
        RResult::ROk(text) => text,
        RResult::RErr(error) => return Err(bad(error.to_string())),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text.as_str())
        .map(Some)
        .map_err(|e| bad(format!("not a schema: {e}")))
}

/// The plugin's configuration checked against its declared schema, if it declares one.
///
/// # Errors
/// [`LoadErrorKind::InvalidConfig`] with every problem.
pub fn check_config(library: &Library, config: &serde_json::Value) -> Result<(), LoadError> {
    let Some(schema) = &library.schema else {
        return Ok(());
    };
    schema.check(config).map_err(|problems| {
        LoadError::new(
            &library.path,
            LoadErrorKind::InvalidConfig {
                name: library.meta.name.clone(),
                problems: problems.iter().map(ToString::to_string).collect(),
            },
        )
    })
}

/// Phase 5: constructs an instance with a host handle and the plugin's config as JSON.
///
/// Call it on the thread that will own the instance.
///
/// # Errors
/// [`LoadErrorKind::Constructor`] or [`LoadErrorKind::ConstructorPanicked`].
pub fn construct(
    library: &Library,
    host: HostBox,
    config_json: &str,
) -> Result<PluginBox, LoadError> {
    match (library.module.new())(host, config_json.into()) {
        RResult::ROk(plugin) => Ok(plugin),
        RResult::RErr(error) => {
            let name = library.meta.name.clone();
            let kind = match &error {
                PluginError::Panicked(message) => LoadErrorKind::ConstructorPanicked {
                    name,
                    message: message.as_str().to_owned(),
                },
                other => LoadErrorKind::Constructor {
                    name,
                    error: other.to_string(),
                },
            };
            Err(LoadError::new(&library.path, kind))
        }
    }
}

/// Maps abi_stable's error onto our kinds; a layout mismatch is summarized to the type and
/// field that differ, its whole report logged at debug level.
pub(crate) fn classify(err: LibraryError) -> LoadErrorKind {
    let (kind, report) = classify_reported(err);
    if let Some(report) = report {
        tracing::debug!(%report, "abi_stable's report of the layout mismatch");
    }
    kind
}

/// [`classify`], with abi_stable's whole report of a layout mismatch beside its summary.
pub(crate) fn classify_reported(err: LibraryError) -> (LoadErrorKind, Option<String>) {
    if let LibraryError::AbiInstability(report) = &err {
        let report = report.to_string();
        let detail = crate::layout::summarize(&report);
        return (LoadErrorKind::AbiLayout { detail }, Some(report));
    }
    let kind = match err {
        LibraryError::OpenError { err, .. } => LoadErrorKind::Corrupt {
            detail: err.to_string(),
        },
        LibraryError::GetSymbolError { err, .. } => LoadErrorKind::NoRootModule {
            detail: err.to_string(),
        },
        LibraryError::AbiInstability(report) => LoadErrorKind::AbiLayout {
            detail: crate::layout::summarize(&report.to_string()),
        },
        LibraryError::RootModule { err, .. } => LoadErrorKind::RootModuleInit {
            detail: err.to_string(),
        },
        LibraryError::Many(mut errors) if errors.len() == 1 => match errors.pop() {
            Some(one) => classify(one),
            None => LoadErrorKind::AbiVersion {
                detail: "unknown error".to_owned(),
            },
        },
        other @ (LibraryError::ParseVersionError(_)
        | LibraryError::IncompatibleVersionNumber { .. }
        | LibraryError::InvalidAbiHeader(_)
        | LibraryError::InvalidCAbi { .. }
        | LibraryError::Many(_)) => LoadErrorKind::AbiVersion {
            detail: other.to_string(),
        },
    };
    (kind, None)
}

/// A plugin file checked and handshaken without being constructed: what
/// `plugbus plugins inspect` prints.
#[derive(Debug)]
pub struct Inspection {
    /// The file.
    pub path: PathBuf,
    /// What the plugin declares, when the library got that far.
    pub meta: Option<PluginMeta>,
    /// The configuration schema it declares, when it declares one and the checks passed.
    pub schema: Option<ConfigSchema>,
    /// SHA-256 of the file, lowercase hex, when it could be read.
    pub sha256: Option<String>,
    /// `Ok` if the host could load it; otherwise the first phase that failed.
    pub result: Result<(), LoadError>,
}

impl Inspection {
    /// True if the file would load (construction aside).
    pub fn is_compatible(&self) -> bool {
        self.result.is_ok()
    }
}

/// Inspects a plugin file: maps it and runs every check short of constructing the plugin.
///
/// No trust checks are made (the file is wherever the user points); use
/// [`inspect_with_policy`] to include them. Mapping a library runs its initializers, so only
/// inspect files you would be willing to load.
pub fn inspect(path: &Path) -> Inspection {
    let read = read_plugin_bytes(path);
    let sha256 = read.as_ref().ok().map(|(_, sha)| sha.clone());
    let result = read
        .and_then(|(bytes, sha)| open_library(path, &bytes, &sha))
        .and_then(|(header, _)| init_root_module(path, header))
        .map(|module| {
            let info = (module.info())();
            let meta = PluginMeta::from_info(&info);
            let checked = check_interface(path, &module, None)
                .and_then(|meta| read_schema(path, &module, &meta));
            (meta, checked)
        });
    match result {
        Ok((meta, checked)) => {
            let (schema, result) = match checked {
                Ok(schema) => (schema, Ok(())),
                Err(err) => (None, Err(err)),
            };
            Inspection {
                path: path.to_path_buf(),
                meta: Some(meta),
                schema,
                sha256,
                result,
            }
        }
        Err(err) => Inspection {
            path: path.to_path_buf(),
            meta: None,
            schema: None,
            sha256,
            result: Err(err),
        },
    }
}

/// Like [`inspect`], with the trust policy's checks first (and pins).
pub fn inspect_with_policy(policy: &TrustPolicy, path: &Path) -> Inspection {
    inspect_with_policy_unless(policy, path, &|_| false)
}

/// [`inspect_with_policy`], never mapping in the host a plugin whose declared name `skip`
/// refuses (a plugin disabled in the config): its inspection is [`LoadErrorKind::Disabled`].
pub fn inspect_with_policy_unless(
    policy: &TrustPolicy,
    path: &Path,
    skip: &dyn Fn(&str) -> bool,
) -> Inspection {
    let loaded =
        check_trust(policy, path).and_then(|trusted| load_trusted_unless(policy, &trusted, skip));
    match loaded {
        Ok(library) => Inspection {
            path: path.to_path_buf(),
            sha256: Some(library.sha256.clone()),
            meta: Some(library.meta),
            schema: library.schema,
            result: Ok(()),
        },
        // Refused before the host mapped it: it is not mapped to say more.
        Err(
            err @ LoadError {
                kind: LoadErrorKind::Disabled { .. } | LoadErrorKind::PanicAbort { .. },
                ..
            },
        ) => Inspection {
            path: path.to_path_buf(),
            meta: None,
            schema: None,
            sha256: sha256_of(path),
            result: Err(err),
        },
        Err(err) => {
            // The interface check fails after the name is known: report it too.
            let mut inspection = inspect_if_trusted(policy, path);
            inspection.result = Err(err);
            inspection
        }
    }
}

fn inspect_if_trusted(policy: &TrustPolicy, path: &Path) -> Inspection {
    match policy.check_file(path) {
        Ok(_) => inspect(path),
        Err(_) => Inspection {
            path: path.to_path_buf(),
            meta: None,
            schema: None,
            sha256: sha256_of(path),
            result: Ok(()),
        },
    }
}

fn sha256_of(path: &Path) -> Option<String> {
    read_plugin_bytes(path).ok().map(|(_, sha)| sha)
}

/// The bytes of a file the user points at (no trust policy), read without blocking: only a
/// regular file under [`MAX_PLUGIN_BYTES`], never a FIFO or device that would hang or never
/// end. With their SHA-256, lowercase hex.
fn read_plugin_bytes(path: &Path) -> Result<(Vec<u8>, String), LoadError> {
    use rustix::fs::{Mode, OFlags};
    use sha2::{Digest, Sha256};
    let io = |source: io::Error| LoadError::new(path, LoadErrorKind::Io { source });
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(e.into()))?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a FIFO, device or socket)"
        };
        return Err(io(io::Error::new(io::ErrorKind::InvalidInput, what)));
    }
    if meta.len() > MAX_PLUGIN_BYTES {
        return Err(LoadError::new(
            path,
            LoadErrorKind::Untrusted(crate::error::TrustErrorKind::TooLarge {
                size: meta.len(),
                limit: MAX_PLUGIN_BYTES,
            }),
        ));
    }
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_PLUGIN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let sha = hex::encode(Sha256::digest(&bytes));
    Ok((bytes, sha))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn private_dir() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("plugins");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        (root, dir)
    }

    fn write(path: &Path, bytes: &[u8], mode: u32) {
        fs::write(path, bytes).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn random_bytes_are_not_a_library() {
        let (_root, dir) = private_dir();
        let file = dir.join("libjunk.so");
        write(&file, b"this is certainly not an ELF file", 0o644);
        let err = load_library(&TrustPolicy::new([dir]), &file).unwrap_err();
        assert!(matches!(err.kind, LoadErrorKind::NotALibrary), "{err}");
        assert_eq!(
            err.to_string(),
            format!(
                "plugin '{}': not a shared library (no ELF or Mach-O header)",
                file.display()
            )
        );
    }

    #[test]
    fn elf_magic_with_garbage_is_corrupt() {
        let (_root, dir) = private_dir();
        let file = dir.join("libbroken.so");
        let mut bytes = b"\x7fELF".to_vec();
        bytes.extend_from_slice(&[0u8; 60]);
        write(&file, &bytes, 0o644);
        let err = load_library(&TrustPolicy::new([dir]), &file).unwrap_err();
        assert!(matches!(err.kind, LoadErrorKind::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("truncated or corrupt"), "{err}");
    }

    #[test]
    fn a_truncated_elf_file_is_caught_before_mapping() {
        let (_root, dir) = private_dir();
        let exe = fs::read(std::env::current_exe().unwrap()).unwrap();
        let file = dir.join("libcut.so");
        write(&file, &exe[..exe.len() / 2], 0o644);
        let err = load_library(&TrustPolicy::new([dir]), &file).unwrap_err();
        assert!(matches!(err.kind, LoadErrorKind::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains("past the end of the file"),
            "{err}"
        );
    }

    #[test]
    fn empty_file_is_not_a_library() {
        let (_root, dir) = private_dir();
        let file = dir.join("libempty.so");
        write(&file, b"", 0o644);
        let err = load_library(&TrustPolicy::new([dir]), &file).unwrap_err();
        assert!(matches!(err.kind, LoadErrorKind::NotALibrary), "{err}");
    }

    #[test]
    fn trust_refusal_comes_first() {
        let (_root, dir) = private_dir();
        let file = dir.join("libopen.so");
        write(&file, b"junk", 0o666);
        let err = load_library(&TrustPolicy::new([dir]), &file).unwrap_err();
        assert!(
            matches!(
                err.kind,
                LoadErrorKind::Untrusted(crate::error::TrustErrorKind::FileWritable { .. })
            ),
            "{err}"
        );
        assert!(err.to_string().starts_with(&format!(
            "plugin '{}': refused by trust policy: file is writable",
            file.display()
        )));
    }

    #[test]
    fn inspection_of_junk_reports_the_phase() {
        let (_root, dir) = private_dir();
        let file = dir.join("libjunk.so");
        write(&file, b"junk", 0o644);
        let inspection = inspect(&file);
        assert!(!inspection.is_compatible());
        assert!(inspection.meta.is_none());
        assert!(inspection.sha256.is_some());
        assert!(matches!(
            inspection.result.unwrap_err().kind,
            LoadErrorKind::NotALibrary
        ));
    }

    #[test]
    fn interface_version_messages_say_old_or_new() {
        let kind = LoadErrorKind::InterfaceVersion {
            plugin: (0, 0),
            host: (0, 1),
            detail: "x".into(),
        };
        assert!(kind
            .to_string()
            .starts_with("interface version 0.0 is too old"));
        let kind = LoadErrorKind::InterfaceVersion {
            plugin: (1, 0),
            host: (0, 1),
            detail: "x".into(),
        };
        assert!(kind
            .to_string()
            .starts_with("interface version 1.0 is too new"));
    }

    #[test]
    fn plugin_names_are_short_and_plain() {
        for good in [
            "audit-logger",
            "auth_enhancer",
            "x",
            "fixture-echo-2",
            "a.b",
        ] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(100_000);
        for bad in ["", "Audit", "-x", "a b", "a/b", "ä", long.as_str()] {
            assert!(check_name(bad).is_err(), "{bad:.20}");
        }
    }

    #[test]
    fn a_fifo_named_like_a_plugin_is_refused_at_once() {
        let (_root, dir) = private_dir();
        let fifo = dir.join("libfifo.so");
        crate::test_fifo::make_fifo(&fifo);
        // Neither path may block on the FIFO: nobody will ever write to it.
        let inspection = inspect(&fifo);
        assert!(!inspection.is_compatible());
        let err = load_library(&TrustPolicy::new([dir]), &fifo).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }

    #[test]
    fn the_pin_checked_is_the_pin_of_the_bytes_read() {
        let (_root, dir) = private_dir();
        let file = dir.join("libx.so");
        write(&file, b"first bytes, not a library", 0o644);
        let policy = TrustPolicy::new([dir]);
        let trusted = policy.check_file(&file).unwrap();
        let bytes = trusted.read_bytes().unwrap();
        // Replaced after the read: the digest stays that of what was read.
        write(&file, b"other bytes", 0o644);
        use sha2::{Digest, Sha256};
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(trusted.sha256().unwrap(), digest);
    }
}
