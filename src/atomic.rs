//! Writing files and folders so that a crash never leaves a partial one
//! behind: data goes to a temporary sibling (`.name.tmp.<pid>`), is flushed
//! to disk, then renamed over the target. Temporaries that a killed process
//! left are removed by the next write of the same target.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `path` atomically; `write` fills the (buffered) temporary file.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    remove_stale_temporaries(path);
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut out = BufWriter::new(File::create(&tmp)?);
        write(&mut out)?;
        out.flush()?;
        out.get_ref().sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// `dir/.name.tmp.<pid>`: a temporary file next to `path`, for an atomic rename.
pub fn temp_sibling(path: &Path) -> PathBuf {
    path.with_file_name(format!("{}{}", temp_prefix(path), std::process::id()))
}

/// `.name.tmp.`: the start of every temporary sibling's name of `path`.
fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy().into_owned());
    format!(".{name}.tmp.")
}

/// Removes the temporary siblings of `path` whose writer process is gone (a
/// write killed before its rename); those of running processes stay.
pub fn remove_stale_temporaries(path: &Path) {
    let prefix = temp_prefix(path);
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix).and_then(|p| p.parse().ok()) else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            let stale = entry.path();
            let _ = if stale.is_dir() {
                std::fs::remove_dir_all(&stale)
            } else {
                std::fs::remove_file(&stale)
            };
        }
    }
}

/// Whether process `pid` exists (on other systems than Unix, every process
/// counts as alive, so nothing is removed).
fn process_alive(pid: u32) -> bool {
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return true;
        };
        // SAFETY: signal 0 only checks that the process exists.
        let status = unsafe { libc::kill(pid, 0) };
        status == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
    }
    #[cfg(not(unix))]
    {
        let _ = pid;
        true
    }
}

/// `dir/.name.gcse-old`: where [`replace_dir`] keeps the folder it replaces
/// until the new one is in place (a name no user file has by chance).
fn backup_of(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map_or("out".into(), |n| n.to_string_lossy().into_owned());
    target.with_file_name(format!(".{name}.gcse-old"))
}

/// Puts directory `new` in the place of directory `target`, keeping
/// `target` until the swap (a crash in between leaves its backup, which
/// [`recover_dir`] restores). `target` must be a folder or absent.
pub fn replace_dir(new: &Path, target: &Path) -> Result<()> {
    recover_dir(target)?;
    let old = backup_of(target);
    let _ = std::fs::remove_dir_all(&old);
    if target.exists() {
        std::fs::rename(target, &old).map_err(|e| Error::io(target, e))?;
    }
    std::fs::rename(new, target).map_err(|e| Error::io(target, e))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// Restores `target` from its backup after a crash inside [`replace_dir`].
pub fn recover_dir(target: &Path) -> Result<()> {
    let old = backup_of(target);
    if !target.exists() && old.is_dir() {
        std::fs::rename(&old, target).map_err(|e| Error::io(target, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_old_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("gcse-atomic-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.txt");
        write_atomic(&path, |w| w.write_all(b"first")).unwrap();
        let err = write_atomic(&path, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("out.txt"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "first");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn temporaries_of_dead_writers_go_and_those_of_live_ones_stay() {
        let dir = std::env::temp_dir().join(format!("gcse-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("v1.2");
        // No process has pid 2^22 + 1 (Linux's pid_max is at most 2^22).
        let dead = dir.join(".v1.2.tmp.4194305");
        let live = dir.join(format!(".v1.2.tmp.{}", std::os::unix::process::parent_id()));
        let other = dir.join(".v1.tmp.4194305");
        for p in [&dead, &live, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        std::fs::create_dir_all(dir.join(".v1.2.tmp.4194306/sub")).unwrap();
        write_atomic(&path, |w| w.write_all(b"new")).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut expected = vec![
            "v1.2".to_string(),
            live.file_name().unwrap().to_string_lossy().into_owned(),
            ".v1.tmp.4194305".to_string(),
        ];
        expected.sort();
        assert_eq!(left, expected);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_replaced_folder_is_backed_up_under_a_name_of_its_own() {
        let dir = std::env::temp_dir().join(format!("gcse-replace-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (target, new) = (dir.join("exp/v1.2"), dir.join("new"));
        std::fs::create_dir_all(&target).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join("model"), b"2").unwrap();
        // A user's folder whose name `with_extension("old")` would give.
        std::fs::create_dir_all(dir.join("exp/v1.old")).unwrap();
        std::fs::write(dir.join("exp/v1.old/thesis.txt"), b"mine").unwrap();
        replace_dir(&new, &target).unwrap();
        assert_eq!(std::fs::read(target.join("model")).unwrap(), b"2");
        assert_eq!(
            std::fs::read(dir.join("exp/v1.old/thesis.txt")).unwrap(),
            b"mine"
        );
        // A crash between the two renames leaves the backup, put back later.
        std::fs::rename(&target, backup_of(&target)).unwrap();
        recover_dir(&target).unwrap();
        assert_eq!(std::fs::read(target.join("model")).unwrap(), b"2");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
