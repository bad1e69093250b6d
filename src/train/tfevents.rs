//! The run's TensorBoard event file, beside `metrics.jsonl` and kept in step
//! with it, so that TensorBoard, `wandb sync` and the Hub's metrics tab read
//! a gcse run.
//!
//! The format is TFRecord framing (the data's length as u64, its masked
//! CRC-32C, the data, the data's masked CRC-32C) around `tensorflow.Event`
//! protocol buffers, encoded here by hand (a few fields; no protobuf crate):
//!
//! - `Event`: `wall_time` (1, double), `step` (2, int64), `file_version`
//!   (3, string; the first event), `summary` (5).
//! - `Summary.Value`: `tag` (1), `simple_value` (2, float), `histo` (5).
//! - `HistogramProto`: `min` .. `sum_squares` (1-5, double), `bucket_limit`
//!   (6) and `bucket` (7), packed doubles.
//!
//! Scalars: `train/loss`, `train/lr`, `train/grad_norm`,
//! `train/sentences_per_second`; every metric of every evaluation as
//! `dev/<task>/<metric>`; an objective's statistics as `<panel>/<key>`, its
//! histograms as TensorBoard histograms over the panel's range.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::objective::stats::StatsPanel;
use crate::train::metrics_log::{LogEntry, StatValue};

/// An open event file: appended to as the metrics log is.
pub struct EventsFile {
    path: std::path::PathBuf,
    out: File,
    /// The statistics panel of the run, from its latest start entry (for
    /// the histograms' range).
    panel: Option<StatsPanel>,
}

impl EventsFile {
    /// Writes `path` afresh (atomically) with the events of `entries`, then
    /// keeps it open to append. Wall times end now, going back by the
    /// steps' durations.
    pub fn create(path: &Path, entries: &[LogEntry]) -> Result<Self> {
        let now = now();
        let total: f64 = entries.iter().map(step_seconds).sum();
        let mut wall = now - total;
        let mut panel = None;
        let mut records = record(&encode_event(wall, 0, Some("brain.Event:2"), &[]));
        for entry in entries {
            wall += step_seconds(entry);
            for event in events_of(entry, wall, &mut panel) {
                records.extend(record(&event));
            }
        }
        write_atomic(path, |w| w.write_all(&records))?;
        let out = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            panel,
        })
    }

    /// Appends the events of `entry`, stamped now.
    pub fn append(&mut self, entry: &LogEntry) -> Result<()> {
        let mut bytes = Vec::new();
        for event in events_of(entry, now(), &mut self.panel) {
            bytes.extend(record(&event));
        }
        if bytes.is_empty() {
            return Ok(());
        }
        self.out
            .write_all(&bytes)
            .and_then(|()| self.out.flush())
            .map_err(|e| Error::io(&self.path, e))
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn step_seconds(entry: &LogEntry) -> f64 {
    match entry {
        LogEntry::Step(s) => s
            .seconds
            .filter(|s| s.is_finite() && *s >= 0.0)
            .unwrap_or(0.0),
        _ => 0.0,
    }
}

/// A summary value: a scalar or a histogram.
enum Value {
    Scalar(f32),
    Histogram(Vec<u8>),
}

/// The encoded events of one log entry (none for a start entry, which
/// only updates `panel`).
fn events_of(entry: &LogEntry, wall: f64, panel: &mut Option<StatsPanel>) -> Vec<Vec<u8>> {
    let mut values: Vec<(String, Value)> = Vec::new();
    let step = entry.step();
    match entry {
        LogEntry::Start(start) => {
            if start.panel.is_some() {
                panel.clone_from(&start.panel);
            }
        }
        LogEntry::Step(s) => {
            let mut scalar = |tag: &str, v: f64| {
                values.push((format!("train/{tag}"), Value::Scalar(v as f32)));
            };
            scalar("loss", s.loss);
            scalar("lr", s.lr);
            if let Some(norm) = s.grad_norm {
                scalar("grad_norm", norm);
            }
            scalar("sentences_per_second", s.sentences_per_second);
        }
        LogEntry::Eval(e) => {
            for (task, scores) in &e.tasks {
                for (metric, value) in &scores.metrics {
                    values.push((
                        format!("dev/{task}/{metric}"),
                        Value::Scalar(value.0 as f32),
                    ));
                }
            }
        }
        LogEntry::Stats(s) => {
            for (key, value) in &s.values {
                let tag = format!("{}/{key}", s.kind);
                match value {
                    StatValue::Scalar(v) => values.push((tag, Value::Scalar(*v as f32))),
                    StatValue::Histogram(counts) => {
                        let range = panel
                            .as_ref()
                            .and_then(|p| p.histogram.as_ref())
                            .filter(|h| h.key == *key)
                            .map_or([0.0, counts.len() as f64], |h| h.range);
                        values.push((tag, Value::Histogram(histogram(counts, range))));
                    }
                }
            }
        }
    }
    if values.is_empty() {
        return Vec::new();
    }
    vec![encode_event(wall, step as i64, None, &values)]
}

/// A `HistogramProto` of `counts` over even bins of `range`, each bin's
/// values taken at its centre.
fn histogram(counts: &[u64], [low, high]: [f64; 2]) -> Vec<u8> {
    let width = (high - low) / counts.len().max(1) as f64;
    let centre = |i: usize| low + width * (i as f64 + 0.5);
    let filled: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] > 0).collect();
    let (min, max) = match (filled.first(), filled.last()) {
        (Some(&a), Some(&b)) => (low + width * a as f64, low + width * (b + 1) as f64),
        _ => (low, low),
    };
    let num: f64 = counts.iter().map(|&c| c as f64).sum();
    let sum: f64 = (0..counts.len())
        .map(|i| counts[i] as f64 * centre(i))
        .sum();
    let squares: f64 = (0..counts.len())
        .map(|i| counts[i] as f64 * centre(i) * centre(i))
        .sum();
    let mut out = Vec::new();
    for (field, v) in [(1, min), (2, max), (3, num), (4, sum), (5, squares)] {
        double_field(field, v, &mut out);
    }
    let limits: Vec<f64> = (0..counts.len())
        .map(|i| low + width * (i + 1) as f64)
        .collect();
    let buckets: Vec<f64> = counts.iter().map(|&c| c as f64).collect();
    packed_doubles(6, &limits, &mut out);
    packed_doubles(7, &buckets, &mut out);
    out
}

fn encode_event(
    wall: f64,
    step: i64,
    file_version: Option<&str>,
    values: &[(String, Value)],
) -> Vec<u8> {
    let mut event = Vec::new();
    double_field(1, wall, &mut event);
    if step != 0 {
        tag(2, 0, &mut event);
        varint(step as u64, &mut event);
    }
    if let Some(version) = file_version {
        bytes_field(3, version.as_bytes(), &mut event);
    }
    if !values.is_empty() {
        let mut summary = Vec::new();
        for (name, value) in values {
            let mut v = Vec::new();
            bytes_field(1, name.as_bytes(), &mut v);
            match value {
                Value::Scalar(x) => {
                    tag(2, 5, &mut v);
                    v.extend_from_slice(&x.to_le_bytes());
                }
                Value::Histogram(h) => bytes_field(5, h, &mut v),
            }
            bytes_field(1, &v, &mut summary);
        }
        bytes_field(5, &summary, &mut event);
    }
    event
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(field: u32, wire: u32, out: &mut Vec<u8>) {
    varint(u64::from(field << 3 | wire), out);
}

fn double_field(field: u32, v: f64, out: &mut Vec<u8>) {
    tag(field, 1, out);
    out.extend_from_slice(&v.to_le_bytes());
}

fn bytes_field(field: u32, data: &[u8], out: &mut Vec<u8>) {
    tag(field, 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

fn packed_doubles(field: u32, values: &[f64], out: &mut Vec<u8>) {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    bytes_field(field, &data, out);
}

/// One TFRecord: length, its masked CRC, the data, the data's masked CRC.
fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(data);
    out.extend_from_slice(&masked_crc(data).to_le_bytes());
    out
}

/// CRC-32C (Castagnoli), rotated and offset as TFRecord masks it.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c(data);
    (crc.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, entry) in table.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 == 1 {
                    0x82f6_3b78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *entry = c;
        }
        table
    });
    !data.iter().fold(!0u32, |crc, &b| {
        table[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8)
    })
}

/// Reading event files back: what the tests and `gcse plot` check written
/// files with.
pub mod read {
    use super::masked_crc;

    /// A scalar or histogram read back: (step, tag, value or bucket counts).
    #[derive(Debug, Clone, PartialEq)]
    pub enum Read {
        /// The file's version string (first event).
        Version(String),
        /// A scalar.
        Scalar { step: i64, tag: String, value: f32 },
        /// A histogram's bucket limits and counts.
        Histogram {
            step: i64,
            tag: String,
            limits: Vec<f64>,
            counts: Vec<f64>,
        },
    }

    /// Every value in `bytes`, checking each record's CRCs; the message
    /// says where the file is damaged.
    pub fn values(bytes: &[u8]) -> Result<Vec<Read>, String> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let header = bytes
                .get(at..at + 12)
                .ok_or(format!("a cut record at byte {at}"))?;
            let len = u64::from_le_bytes(header[..8].try_into().unwrap()) as usize;
            if masked_crc(&header[..8]) != u32::from_le_bytes(header[8..12].try_into().unwrap()) {
                return Err(format!("bad length CRC at byte {at}"));
            }
            let data = bytes
                .get(at + 12..at + 12 + len)
                .ok_or(format!("a cut record at byte {at}"))?;
            let crc = bytes
                .get(at + 12 + len..at + 16 + len)
                .ok_or(format!("a cut record at byte {at}"))?;
            if masked_crc(data) != u32::from_le_bytes(crc.try_into().unwrap()) {
                return Err(format!("bad data CRC at byte {at}"));
            }
            event(data, &mut out)?;
            at += 16 + len;
        }
        Ok(out)
    }

    /// One field of a message: its number, wire type, varint value, and the
    /// bytes of a fixed or length-delimited field.
    type Field<'a> = (u64, u64, u64, &'a [u8]);

    /// The fields of a message.
    fn fields(mut data: &[u8]) -> Result<Vec<Field<'_>>, String> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let key = varint(&mut data)?;
            let (field, wire) = (key >> 3, key & 7);
            let (number, bytes) = match wire {
                0 => (varint(&mut data)?, &[][..]),
                1 | 5 => {
                    let n = if wire == 1 { 8 } else { 4 };
                    let (b, rest) = data.split_at_checked(n).ok_or("a cut fixed field")?;
                    data = rest;
                    (0, b)
                }
                2 => {
                    let n = varint(&mut data)? as usize;
                    let (b, rest) = data.split_at_checked(n).ok_or("a cut field")?;
                    data = rest;
                    (0, b)
                }
                w => return Err(format!("wire type {w}")),
            };
            out.push((field, wire, number, bytes));
        }
        Ok(out)
    }

    fn varint(data: &mut &[u8]) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = data.split_first().ok_or("a cut varint")?;
            *data = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("a varint too long".into())
    }

    fn doubles(bytes: &[u8]) -> Vec<f64> {
        bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    fn event(data: &[u8], out: &mut Vec<Read>) -> Result<(), String> {
        let top = fields(data)?;
        let step = top
            .iter()
            .find(|f| f.0 == 2 && f.1 == 0)
            .map_or(0, |f| f.2 as i64);
        for (field, _, _, bytes) in &top {
            match field {
                3 => out.push(Read::Version(String::from_utf8_lossy(bytes).into_owned())),
                5 => {
                    for (_, _, _, value) in fields_of(bytes, 1)? {
                        let value_fields = fields(value)?;
                        let tag = value_fields
                            .iter()
                            .find(|f| f.0 == 1)
                            .map(|f| String::from_utf8_lossy(f.3).into_owned())
                            .unwrap_or_default();
                        for (f, _, _, b) in &value_fields {
                            match f {
                                2 => out.push(Read::Scalar {
                                    step,
                                    tag: tag.clone(),
                                    value: f32::from_le_bytes((*b).try_into().unwrap()),
                                }),
                                5 => {
                                    let h = fields(b)?;
                                    let get = |n| {
                                        h.iter()
                                            .find(|f| f.0 == n)
                                            .map_or(Vec::new(), |f| doubles(f.3))
                                    };
                                    out.push(Read::Histogram {
                                        step,
                                        tag: tag.clone(),
                                        limits: get(6),
                                        counts: get(7),
                                    });
                                }
                                _ => {}
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn fields_of(data: &[u8], number: u64) -> Result<Vec<Field<'_>>, String> {
        Ok(fields(data)?
            .into_iter()
            .filter(|f| f.0 == number)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::read::{values, Read};
    use super::*;

    #[test]
    fn crc32c_matches_its_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn records_read_back_and_damage_is_found() {
        let values_in = [
            ("train/loss".to_string(), Value::Scalar(0.25)),
            (
                "s/weights".to_string(),
                Value::Histogram(histogram(&[1, 0, 3], [0.0, 1.5])),
            ),
        ];
        let mut bytes = record(&encode_event(1.0, 0, Some("brain.Event:2"), &[]));
        bytes.extend(record(&encode_event(2.0, 300, None, &values_in)));
        let read = values(&bytes).unwrap();
        assert_eq!(
            read,
            [
                Read::Version("brain.Event:2".into()),
                Read::Scalar {
                    step: 300,
                    tag: "train/loss".into(),
                    value: 0.25
                },
                Read::Histogram {
                    step: 300,
                    tag: "s/weights".into(),
                    limits: vec![0.5, 1.0, 1.5],
                    counts: vec![1.0, 0.0, 3.0],
                },
            ]
        );
        let mut damaged = bytes.clone();
        let last = damaged.len() - 10;
        damaged[last] ^= 1;
        assert!(values(&damaged).unwrap_err().contains("CRC"));
        assert!(values(&bytes[..bytes.len() - 1])
            .unwrap_err()
            .contains("cut"));
    }
}
