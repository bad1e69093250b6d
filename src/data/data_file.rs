//! Opening a data file, plain or gzip-compressed (a name ending in `.gz`,
//! read through flate2), and telling its layout by its name without `.gz`.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Whether `path` names a gzip-compressed file.
pub fn is_gzip(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

/// The bytes of `path`, decompressed when its name ends in `.gz`.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    if !is_gzip(path) {
        return std::fs::read(path).map_err(|e| Error::io(path, e));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

/// The text of `path` ([`read_bytes`]); bytes that are not UTF-8 are an
/// error naming their line.
pub fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_bytes(path)?).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Error::data(path, line, "not valid UTF-8")
    })
}

/// The extension of `path` in lower case, after a final `.gz` is set
/// aside (`a.csv.gz` → `csv`).
pub fn extension(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let name = if is_gzip(path) {
        &name[..name.len() - 3]
    } else {
        name
    };
    let (stem, ext) = name.rsplit_once('.')?;
    (!stem.is_empty()).then(|| ext.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_files_read_as_their_plain_text_and_keep_their_layout_name() {
        let dir = std::env::temp_dir().join(format!("gcse-data-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let plain = dir.join("a.csv");
        let packed = dir.join("a.csv.gz");
        let text = "id,text\n1,\"two\nlines\"\n";
        std::fs::write(&plain, text).unwrap();
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&packed).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(text.as_bytes()).unwrap();
        gz.finish().unwrap();
        assert_eq!(read_text(&packed).unwrap(), text);
        assert_eq!(read_bytes(&plain).unwrap(), read_bytes(&packed).unwrap());
        assert_eq!(extension(&packed).as_deref(), Some("csv"));
        assert_eq!(extension(Path::new("x/B.JSONL")).as_deref(), Some("jsonl"));
        assert_eq!(extension(Path::new("x/.gz")), None);
        assert_eq!(extension(Path::new("noext")), None);
        std::fs::write(dir.join("bad.gz"), b"not gzip").unwrap();
        let err = read_bytes(&dir.join("bad.gz")).unwrap_err().to_string();
        assert!(err.contains("bad.gz"), "{err}");
        std::fs::write(dir.join("b.txt"), b"ok\n\xff\n").unwrap();
        let err = read_text(&dir.join("b.txt")).unwrap_err().to_string();
        assert!(err.contains("b.txt:2") && err.contains("UTF-8"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
