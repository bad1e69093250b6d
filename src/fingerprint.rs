//! Content fingerprints: 128-bit FNV-1a over delimited fields, the key of an
//! LLM request in the answer store and of a pipeline stage's inputs. Stable
//! across runs, machines and versions (no seeded hasher), not cryptographic.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

/// A running fingerprint.
#[derive(Debug, Clone, Copy)]
pub struct Fingerprint(u128);

impl Default for Fingerprint {
    fn default() -> Self {
        Self(OFFSET)
    }
}

impl Fingerprint {
    /// A fingerprint of nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one field: its length first, so that no two field lists share a
    /// byte stream.
    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes(&(bytes.len() as u64).to_le_bytes());
        self.bytes(bytes)
    }

    fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        for byte in bytes {
            self.0 ^= u128::from(*byte);
            self.0 = self.0.wrapping_mul(PRIME);
        }
        self
    }

    /// Adds a file's bytes, or a folder's files (names relative to it and
    /// contents, sorted by name), as one field each.
    pub fn path(&mut self, path: &Path) -> Result<&mut Self> {
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        if meta.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()
                .map_err(|e| Error::io(path, e))?;
            entries.sort();
            for name in entries {
                self.field(name.to_string_lossy().as_bytes());
                self.path(&path.join(name))?;
            }
        } else {
            let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            self.bytes(&meta.len().to_le_bytes());
            let mut buffer = vec![0u8; 1 << 16];
            loop {
                let n = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
                if n == 0 {
                    break;
                }
                self.bytes(&buffer[..n]);
            }
        }
        Ok(self)
    }

    /// 32 hex digits.
    pub fn hex(&self) -> String {
        format!("{:032x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_delimited_and_folders_see_names_and_contents() {
        let ab = Fingerprint::new().field(b"a").field(b"b").hex();
        assert_ne!(ab, Fingerprint::new().field(b"ab").hex());
        assert_ne!(ab, Fingerprint::new().field(b"b").field(b"a").hex());
        assert_eq!(ab, Fingerprint::new().field(b"a").field(b"b").hex());
        let dir = std::env::temp_dir().join(format!("gcse-fingerprint-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/x.txt"), "one").unwrap();
        let of = |p: &Path| Fingerprint::new().path(p).unwrap().hex();
        let first = of(&dir);
        std::fs::write(dir.join("sub/x.txt"), "two").unwrap();
        let second = of(&dir);
        std::fs::rename(dir.join("sub/x.txt"), dir.join("sub/y.txt")).unwrap();
        let third = of(&dir);
        assert!(first != second && second != third && first != third);
        assert!(Fingerprint::new().path(&dir.join("absent")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
