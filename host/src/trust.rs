//! May this `.so` be loaded? Checks made before a plugin library is opened.
//!
//! Loading a shared library runs its code with the host's privileges, so the host
//! only loads files that someone with the host's rights put in place:
//! - the file, once every symlink is resolved, lies inside one of the configured
//!   plugin directories (a symlink leading out is refused, naming link and target);
//! - it is a regular file;
//! - like sshd's StrictModes, the file and every directory from it up to `/` belong to
//!   root or to the host's user and are not writable by group or others; a *sticky*
//!   world-writable directory (`/tmp`) is accepted as an ancestor when the entry below it
//!   belongs to root or the host's user (the sticky bit keeps others from renaming or
//!   removing it);
//! - optionally, its SHA-256 equals a pin from the config, keyed by plugin name or
//!   by file name.
//!
//! [`TrustPolicy::discover`] lists every `*.so` directly inside each directory, in a
//! deterministic order, and checks each one; a refused file never hides the others.
//!
//! The window between these checks and the load is closed by [`TrustedFile::read_bytes`]:
//! it opens the file without following links and without blocking (a FIFO named `x.so`
//! never hangs the host), checks on the open descriptor that it is still the regular file
//! that was checked, under the size cap, and reads its bytes once. The loader hashes and
//! pins those bytes and maps a private copy of them, never the original path.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{TrustError, TrustErrorKind};

/// Group-write and other-write permission bits.
const GROUP_OR_OTHER_WRITE: u32 = 0o022;
/// The sticky bit: in such a directory only an entry's owner may rename or remove it.
const STICKY: u32 = 0o1000;
/// The largest plugin file the loader reads: 256 MiB.
pub const MAX_PLUGIN_BYTES: u64 = 256 * 1024 * 1024;

/// The host's effective uid: files it trusts belong to it or to root.
fn host_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == host_uid()
}

/// Which plugin files may be loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustPolicy {
    /// Plugin directories. A file is trusted only if its canonical path lies inside
    /// one of them. Directories that do not exist are skipped.
    pub directories: Vec<PathBuf>,
    /// SHA-256 pins, keyed by plugin name or by file name (`libaudit_logger.so`).
    pub pins: HashMap<String, [u8; 32]>,
}

/// A plugin file that passed [`TrustPolicy::check_file`].
#[derive(Debug, Clone)]
pub struct TrustedFile {
    requested: PathBuf,
    path: PathBuf,
    sha256: OnceLock<[u8; 32]>,
}

impl TrustedFile {
    /// The canonical path (symlinks resolved): open this one.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the file's bytes once, at most [`MAX_PLUGIN_BYTES`], from a descriptor opened
    /// without following symlinks and without blocking, after checking on that descriptor
    /// that it is a regular file owned by root or the host's user and not writable by group
    /// or others. The SHA-256 of these bytes becomes the file's [`sha256`](Self::sha256):
    /// pins are checked against exactly what is read, and the loader maps a copy of it.
    ///
    /// # Errors
    /// The file is no longer a trusted regular file, is too large, or changed while it was
    /// read.
    pub fn read_bytes(&self) -> Result<Vec<u8>, TrustError> {
        use rustix::fs::{Mode, OFlags};
        let refuse = |kind| TrustError {
            path: self.requested.clone(),
            kind,
        };
        let io = |source: io::Error| refuse(TrustErrorKind::Io { source });
        let fd = rustix::fs::open(
            &self.path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(e.into()))?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(io)?;
        check_plugin_file(&self.path, &meta).map_err(refuse)?;
        if meta.len() > MAX_PLUGIN_BYTES {
            return Err(refuse(TrustErrorKind::TooLarge {
                size: meta.len(),
                limit: MAX_PLUGIN_BYTES,
            }));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        (&file)
            .take(MAX_PLUGIN_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        let after = file.metadata().map_err(io)?;
        let changed = bytes.len() as u64 != meta.len()
            || after.len() != meta.len()
            || after.modified().ok() != meta.modified().ok();
        if changed {
            return Err(refuse(TrustErrorKind::Changed));
        }
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if self.sha256.set(digest).is_err() && self.sha256.get() != Some(&digest) {
            return Err(refuse(TrustErrorKind::Changed));
        }
        Ok(bytes)
    }

    /// The path as it was given to [`TrustPolicy::check_file`] or found by
    /// [`TrustPolicy::discover`].
    pub fn requested_path(&self) -> &Path {
        &self.requested
    }

    /// The file name of the canonical path (`libaudit_logger.so`), if it is UTF-8.
    pub fn file_name(&self) -> Option<&str> {
        self.path.file_name().and_then(|name| name.to_str())
    }

    /// The file's SHA-256, read and computed on first use and then cached.
    pub fn sha256(&self) -> Result<[u8; 32], TrustError> {
        if let Some(digest) = self.sha256.get() {
            return Ok(*digest);
        }
        let digest = hash_file(&self.path).map_err(|source| TrustError {
            path: self.requested.clone(),
            kind: TrustErrorKind::Io { source },
        })?;
        Ok(*self.sha256.get_or_init(|| digest))
    }

    /// [`TrustedFile::sha256`] as lowercase hex.
    pub fn sha256_hex(&self) -> Result<String, TrustError> {
        self.sha256().map(hex::encode)
    }
}

impl TrustPolicy {
    /// A policy with the given directories and no pins.
    pub fn new(directories: impl IntoIterator<Item = PathBuf>) -> Self {
        Self {
            directories: directories.into_iter().collect(),
            pins: HashMap::new(),
        }
    }

    /// The policy a config describes: `plugins.directories`, and a pin for every
    /// `[plugin.<name>]` table with a `sha256`, keyed by the plugin's name.
    pub fn from_config(config: &Config) -> Self {
        Self {
            directories: config.plugins.directories.clone(),
            pins: config
                .plugin
                .iter()
                .filter_map(|(name, settings)| settings.sha256.map(|pin| (name.clone(), pin)))
                .collect(),
        }
    }

    /// Adds (or replaces) a pin; returns `self` for chaining.
    pub fn with_pin(mut self, key: impl Into<String>, sha256: [u8; 32]) -> Self {
        self.pins.insert(key.into(), sha256);
        self
    }

    /// Checks one file: inside a plugin directory once resolved, a regular file,
    /// and neither it nor its directories writable by group or others.
    pub fn check_file(&self, path: &Path) -> Result<TrustedFile, TrustError> {
        let refuse = |kind| TrustError {
            path: path.to_path_buf(),
            kind,
        };
        let link_meta =
            fs::symlink_metadata(path).map_err(|source| refuse(TrustErrorKind::Io { source }))?;
        let canonical =
            fs::canonicalize(path).map_err(|source| refuse(TrustErrorKind::Io { source }))?;

        let Some(root) = self.containing_directory(&canonical) else {
            return Err(refuse(if link_meta.file_type().is_symlink() {
                TrustErrorKind::SymlinkOutside { target: canonical }
            } else {
                TrustErrorKind::OutsideDirectories { canonical }
            }));
        };

        let meta =
            fs::metadata(&canonical).map_err(|source| refuse(TrustErrorKind::Io { source }))?;
        check_plugin_file(&canonical, &meta).map_err(refuse)?;

        // Every directory from the file's own up to `/`: any of them writable, or owned, by
        // someone else lets them swap the file (the plugin directory alone is not enough).
        // Up to the plugin directory no exception is made, not even for a sticky directory:
        // anyone could add files there. Above it a sticky directory may be world-writable.
        let mut below: &Path = &canonical;
        let mut dir = canonical.parent();
        while let Some(current) = dir {
            let above_root = !current.starts_with(&root);
            check_directory(current, below, above_root).map_err(refuse)?;
            below = current;
            dir = current.parent();
        }
        // A symlink's own directory too: whoever can write there can repoint it.
        if link_meta.file_type().is_symlink() {
            let link_dir = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            let link_dir = fs::canonicalize(link_dir)
                .map_err(|source| refuse(TrustErrorKind::Io { source }))?;
            check_directory(&link_dir, path, false).map_err(refuse)?;
        }

        Ok(TrustedFile {
            requested: path.to_path_buf(),
            path: canonical,
            sha256: OnceLock::new(),
        })
    }

    /// Checks a trusted file against the pin for `name` (a plugin name) and the pin
    /// for its file name, whichever exist. No pin: `Ok`.
    pub fn check_pin(&self, name: &str, file: &TrustedFile) -> Result<(), TrustError> {
        let keys = [Some(name), file.file_name()];
        for key in keys.into_iter().flatten() {
            let Some(expected) = self.pins.get(key) else {
                continue;
            };
            let actual = file.sha256()?;
            if actual != *expected {
                return Err(TrustError {
                    path: file.requested.clone(),
                    kind: TrustErrorKind::PinMismatch {
                        pin: key.to_owned(),
                        expected: hex::encode(expected),
                        actual: hex::encode(actual),
                    },
                });
            }
        }
        Ok(())
    }

    /// Every `*.so` directly inside each plugin directory, each checked.
    ///
    /// Directories are visited in configured order (a directory listed twice, or two
    /// entries naming the same folder, is visited once); files within one are
    /// sorted by name. A directory that cannot be listed yields one error and the
    /// scan goes on; a refused file yields its error and never hides the others.
    pub fn discover(&self) -> Vec<Result<TrustedFile, TrustError>> {
        let mut results = Vec::new();
        let mut seen_dirs: Vec<PathBuf> = Vec::new();
        for dir in &self.directories {
            let key = fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            if seen_dirs.contains(&key) {
                continue;
            }
            seen_dirs.push(key);
            let entries = match fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(source) => {
                    results.push(Err(TrustError {
                        path: dir.clone(),
                        kind: TrustErrorKind::DirectoryUnreadable { source },
                    }));
                    continue;
                }
            };
            let mut names = Vec::new();
            for entry in entries {
                match entry {
                    Ok(entry) => {
                        let name = entry.file_name();
                        if Path::new(&name).extension().is_some_and(|ext| ext == "so") {
                            names.push(name);
                        }
                    }
                    Err(source) => results.push(Err(TrustError {
                        path: dir.clone(),
                        kind: TrustErrorKind::DirectoryUnreadable { source },
                    })),
                }
            }
            names.sort();
            results.extend(
                names
                    .into_iter()
                    .map(|name| self.check_file(&dir.join(name))),
            );
        }
        results
    }

    /// The canonical plugin directory containing `canonical`, if any.
    fn containing_directory(&self, canonical: &Path) -> Option<PathBuf> {
        self.directories
            .iter()
            .filter_map(|dir| fs::canonicalize(dir).ok())
            .find(|dir| canonical.starts_with(dir) && canonical != dir)
    }
}

/// The rules for the plugin file itself: a regular file, not writable by group or others,
/// owned by root or the host's user. Applied to the path when it is checked and again to the
/// descriptor its bytes are read from.
fn check_plugin_file(path: &Path, meta: &fs::Metadata) -> Result<(), TrustErrorKind> {
    if !meta.is_file() {
        return Err(TrustErrorKind::NotRegularFile {
            file_type: describe(&meta.file_type()),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & GROUP_OR_OTHER_WRITE != 0 {
        return Err(TrustErrorKind::FileWritable { mode });
    }
    check_owner(path, meta)
}

/// Refuses a file or directory owned by anyone but root or the host's user.
fn check_owner(path: &Path, meta: &fs::Metadata) -> Result<(), TrustErrorKind> {
    use std::os::unix::fs::MetadataExt;
    if trusted_owner(meta.uid()) {
        Ok(())
    } else {
        Err(TrustErrorKind::ForeignOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            host: host_uid(),
        })
    }
}

/// Refuses a directory owned by someone else, or writable by group or others, unless
/// `sticky_ok` and it is sticky and `below` (the entry under it on the way to the file)
/// belongs to root or the host's user: then nobody else can rename or remove that entry.
fn check_directory(dir: &Path, below: &Path, sticky_ok: bool) -> Result<(), TrustErrorKind> {
    let meta = fs::metadata(dir).map_err(|source| TrustErrorKind::Io { source })?;
    check_owner(dir, &meta)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & GROUP_OR_OTHER_WRITE != 0 {
        let below_ok = || {
            fs::symlink_metadata(below).is_ok_and(|m| {
                use std::os::unix::fs::MetadataExt;
                trusted_owner(m.uid())
            })
        };
        if !sticky_ok || mode & STICKY == 0 || !below_ok() {
            return Err(TrustErrorKind::DirectoryWritable {
                dir: dir.to_path_buf(),
                mode,
            });
        }
    }
    Ok(())
}

fn describe(file_type: &fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a named pipe"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_char_device() {
        "a character device"
    } else {
        "not a file"
    }
}

fn hash_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        hasher.update(buffer.get(..read).unwrap_or_default());
    }
    Ok(hasher.finalize().into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A private plugin dir (0755) inside a private temp dir.
    fn setup() -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("plugins");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        (root, dir)
    }

    fn write_plugin(path: &Path, bytes: &[u8], mode: u32) {
        fs::write(path, bytes).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    #[test]
    fn good_file_is_trusted_with_canonical_path() {
        let (_root, dir) = setup();
        let file = dir.join("libgood.so");
        write_plugin(&file, b"not really elf", 0o644);
        let policy = TrustPolicy::new([dir.clone()]);
        // A non-canonical spelling of the same file.
        let trusted = policy
            .check_file(&dir.join(".").join("libgood.so"))
            .unwrap();
        assert_eq!(trusted.path(), fs::canonicalize(&file).unwrap());
        assert_eq!(trusted.file_name(), Some("libgood.so"));
        assert_eq!(trusted.sha256().unwrap(), sha(b"not really elf"));
        assert_eq!(
            trusted.sha256_hex().unwrap(),
            hex::encode(sha(b"not really elf"))
        );
    }

    #[test]
    fn group_or_other_writable_file_is_refused_with_mode() {
        let (_root, dir) = setup();
        let policy = TrustPolicy::new([dir.clone()]);
        for mode in [0o664, 0o646, 0o666] {
            let file = dir.join("libx.so");
            write_plugin(&file, b"x", mode);
            let err = policy.check_file(&file).unwrap_err();
            assert!(
                matches!(err.kind, TrustErrorKind::FileWritable { mode: m } if m == mode),
                "{err}"
            );
            assert_eq!(
                err.to_string(),
                format!(
                    "refusing plugin '{}': file is writable by group or others (mode {mode:04o})",
                    file.display()
                )
            );
        }
        write_plugin(&dir.join("libx.so"), b"x", 0o600);
        policy.check_file(&dir.join("libx.so")).unwrap();
    }

    #[test]
    fn writable_directory_is_refused() {
        let (_root, dir) = setup();
        let file = dir.join("libx.so");
        write_plugin(&file, b"x", 0o644);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o775)).unwrap();
        let policy = TrustPolicy::new([dir.clone()]);
        let err = policy.check_file(&file).unwrap_err();
        let canonical_dir = fs::canonicalize(&dir).unwrap();
        match &err.kind {
            TrustErrorKind::DirectoryWritable { dir: d, mode } => {
                assert_eq!(d, &canonical_dir);
                assert_eq!(*mode, 0o775);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().ends_with(&format!(
            "directory '{}' is writable by group or others (mode 0775)",
            canonical_dir.display()
        )));

        // A sticky world-writable directory is still refused.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
        let err = policy.check_file(&file).unwrap_err();
        assert!(
            matches!(
                err.kind,
                TrustErrorKind::DirectoryWritable { mode: 0o1777, .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn writable_subdirectory_is_refused() {
        let (_root, dir) = setup();
        let sub = dir.join("sub");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o757)).unwrap();
        let file = sub.join("libx.so");
        write_plugin(&file, b"x", 0o644);
        let err = TrustPolicy::new([dir]).check_file(&file).unwrap_err();
        assert!(
            matches!(
                err.kind,
                TrustErrorKind::DirectoryWritable { mode: 0o757, .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn symlink_leading_out_is_refused_naming_link_and_target() {
        let (root, dir) = setup();
        let outside = root.path().join("evil.so");
        write_plugin(&outside, b"evil", 0o644);
        let link = dir.join("libevil.so");
        symlink(&outside, &link).unwrap();
        let err = TrustPolicy::new([dir]).check_file(&link).unwrap_err();
        let target = fs::canonicalize(&outside).unwrap();
        assert!(
            matches!(&err.kind, TrustErrorKind::SymlinkOutside { target: t } if *t == target),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "refusing plugin '{}': symbolic link leads outside the plugin directories, to '{}'",
                link.display(),
                target.display()
            )
        );
    }

    #[test]
    fn symlink_inside_directory_is_allowed() {
        let (_root, dir) = setup();
        let real = dir.join("libreal.so.1");
        write_plugin(&real, b"real", 0o644);
        let link = dir.join("libreal.so");
        symlink(&real, &link).unwrap();
        let trusted = TrustPolicy::new([dir]).check_file(&link).unwrap();
        assert_eq!(trusted.path(), fs::canonicalize(&real).unwrap());
        assert_eq!(trusted.requested_path(), link);
    }

    #[test]
    fn symlink_in_writable_directory_is_refused() {
        let (root, dir) = setup();
        let real = dir.join("libreal.so");
        write_plugin(&real, b"real", 0o644);
        let open_dir = root.path().join("open");
        fs::create_dir(&open_dir).unwrap();
        fs::set_permissions(&open_dir, fs::Permissions::from_mode(0o777)).unwrap();
        let link = open_dir.join("libreal.so");
        symlink(&real, &link).unwrap();
        let policy = TrustPolicy::new([dir.clone(), open_dir.clone()]);
        let err = policy.check_file(&link).unwrap_err();
        let expected_dir = fs::canonicalize(&open_dir).unwrap();
        assert!(
            matches!(&err.kind, TrustErrorKind::DirectoryWritable { dir: d, mode: 0o777 } if *d == expected_dir),
            "{err}"
        );
        // The target itself, by its own path, is fine.
        policy.check_file(&real).unwrap();
    }

    #[test]
    fn path_outside_every_directory_is_refused() {
        let (root, dir) = setup();
        let other = root.path().join("libother.so");
        write_plugin(&other, b"o", 0o644);
        let err = TrustPolicy::new([dir.clone()])
            .check_file(&other)
            .unwrap_err();
        assert!(
            matches!(err.kind, TrustErrorKind::OutsideDirectories { .. }),
            "{err}"
        );
        // `..` does not escape either.
        let err = TrustPolicy::new([dir.clone()])
            .check_file(&dir.join("..").join("libother.so"))
            .unwrap_err();
        assert!(
            matches!(err.kind, TrustErrorKind::OutsideDirectories { .. }),
            "{err}"
        );
        // No directories: nothing is trusted.
        let err = TrustPolicy::default().check_file(&other).unwrap_err();
        assert!(
            matches!(err.kind, TrustErrorKind::OutsideDirectories { .. }),
            "{err}"
        );
    }

    #[test]
    fn non_regular_and_missing_files_are_refused() {
        let (_root, dir) = setup();
        let sub = dir.join("libdir.so");
        fs::create_dir(&sub).unwrap();
        fs::set_permissions(&sub, fs::Permissions::from_mode(0o755)).unwrap();
        let policy = TrustPolicy::new([dir.clone()]);
        let err = policy.check_file(&sub).unwrap_err();
        assert!(
            matches!(
                err.kind,
                TrustErrorKind::NotRegularFile {
                    file_type: "a directory"
                }
            ),
            "{err}"
        );
        assert!(err
            .to_string()
            .ends_with("not a regular file (a directory)"));

        let err = policy.check_file(&dir.join("libmissing.so")).unwrap_err();
        assert!(
            matches!(&err.kind, TrustErrorKind::Io { source } if source.kind() == io::ErrorKind::NotFound),
            "{err}"
        );
    }

    #[test]
    fn pins_match_by_plugin_name_or_file_name() {
        let (_root, dir) = setup();
        let file = dir.join("libaudit_logger.so");
        write_plugin(&file, b"audit v1", 0o644);
        let policy = TrustPolicy::new([dir.clone()]);
        let trusted = policy.check_file(&file).unwrap();
        // No pin at all.
        policy.check_pin("audit-logger", &trusted).unwrap();

        let good = policy.clone().with_pin("audit-logger", sha(b"audit v1"));
        good.check_pin("audit-logger", &trusted).unwrap();
        let by_file = policy
            .clone()
            .with_pin("libaudit_logger.so", sha(b"audit v1"));
        by_file.check_pin("whatever", &trusted).unwrap();

        let bad = policy.clone().with_pin("audit-logger", sha(b"audit v2"));
        let err = bad.check_pin("audit-logger", &trusted).unwrap_err();
        match &err.kind {
            TrustErrorKind::PinMismatch {
                pin,
                expected,
                actual,
            } => {
                assert_eq!(pin, "audit-logger");
                assert_eq!(expected, &hex::encode(sha(b"audit v2")));
                assert_eq!(actual, &hex::encode(sha(b"audit v1")));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().contains(&hex::encode(sha(b"audit v2"))));
        assert!(err.to_string().contains(&hex::encode(sha(b"audit v1"))));

        let bad_file = policy.with_pin("libaudit_logger.so", sha(b"other"));
        assert!(bad_file.check_pin("audit-logger", &trusted).is_err());
    }

    #[test]
    fn pins_come_from_config() {
        let pin = hex::encode(sha(b"p"));
        let config = Config::from_toml_str(
            &format!(
                "[plugins]\ndirectories = [\"/x\"]\n[plugin.a]\nsha256 = \"{pin}\"\n[plugin.b]\n"
            ),
            "t",
        )
        .unwrap();
        let policy = TrustPolicy::from_config(&config);
        assert_eq!(policy.directories, vec![PathBuf::from("/x")]);
        assert_eq!(policy.pins.len(), 1);
        assert_eq!(policy.pins.get("a"), Some(&sha(b"p")));
    }

    #[test]
    fn discover_is_sorted_and_a_bad_file_hides_nothing() {
        let (root, dir) = setup();
        write_plugin(&dir.join("libc.so"), b"c", 0o644);
        write_plugin(&dir.join("liba.so"), b"a", 0o644);
        write_plugin(&dir.join("libb.so"), b"b", 0o666); // refused
        write_plugin(&dir.join("notes.txt"), b"n", 0o644); // ignored
        write_plugin(&dir.join("libd.so.1"), b"d", 0o644); // ignored: not *.so
        let outside = root.path().join("evil.so");
        write_plugin(&outside, b"e", 0o644);
        symlink(&outside, dir.join("libe.so")).unwrap(); // refused
        let second = root.path().join("more");
        fs::create_dir(&second).unwrap();
        fs::set_permissions(&second, fs::Permissions::from_mode(0o700)).unwrap();
        write_plugin(&second.join("libz.so"), b"z", 0o600);

        let policy = TrustPolicy::new([
            dir.clone(),
            root.path().join("missing"),
            second.clone(),
            dir.join("."), // same folder again: visited once
        ]);
        let results = policy.discover();
        let summary: Vec<String> = results
            .iter()
            .map(|r| match r {
                Ok(file) => format!("ok {}", file.file_name().unwrap()),
                Err(err) => format!("err {}", err.path.file_name().unwrap().to_string_lossy()),
            })
            .collect();
        assert_eq!(
            summary,
            [
                "ok liba.so",
                "err libb.so",
                "ok libc.so",
                "err libe.so",
                "err missing",
                "ok libz.so"
            ]
        );
        let missing = results[4].as_ref().unwrap_err();
        assert!(matches!(
            missing.kind,
            TrustErrorKind::DirectoryUnreadable { .. }
        ));
        assert!(
            missing
                .to_string()
                .starts_with("cannot scan plugin directory '"),
            "{missing}"
        );
    }
}
