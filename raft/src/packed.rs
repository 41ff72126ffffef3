//! A config as it travels in Raft entries: zstd-compressed, then base64.
//!
//! openraft 0.9 gives one AppendEntries call a single heartbeat interval
//! (100 ms here) to be encoded, sent, decoded and fsynced by the follower; a
//! multi-MB config sent as escaped JSON text does not fit and is retried
//! forever. Normalized configs compress 10-40x, and a base64 string is
//! copied through the JSON wire and log encodings without escaping. The
//! packed form is what the log stores and the network carries; it is
//! unpacked once, when the state machine applies the entry.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Marks a packed config on the wire (anything else is plain text, as
/// written by earlier versions).
const PREFIX: &str = "zstd+b64:";
/// zstd level: level 3 packs an 11 MB normalized config in about 50 ms.
const LEVEL: i32 = 3;
/// Largest config an entry may unpack to: larger frames are refused rather
/// than allocated (a corrupt or hostile size field).
pub const MAX_UNPACKED_BYTES: usize = 256 * 1024 * 1024;
/// Largest packed config a proposal may carry. A follower must receive,
/// decode and fsync an entry within one heartbeat interval; about 4 MiB is
/// what this fits on the loopback bench machine (docs/benchmarks.md).
/// Larger configs are refused at proposal time with this limit named.
pub const MAX_PACKED_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("packed config is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("packed config is not a zstd frame with a content size: {0}")]
    Frame(String),
    #[error("packed config unpacks to {0} bytes, over the {MAX_UNPACKED_BYTES}-byte limit")]
    TooLarge(u64),
    #[error("packed config does not decompress: {0}")]
    Zstd(#[from] std::io::Error),
    #[error("unpacked config is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// A config text in its replicated form. Cloning shares the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct PackedConfig {
    /// `PREFIX` + base64(zstd(text)), or plain text from an older entry.
    wire: Arc<str>,
}

impl PackedConfig {
    /// Compress `text`.
    pub fn pack(text: &str) -> PackedConfig {
        // bulk::compress records the content size in the frame header,
        // which `unpack` reads to size its buffer.
        let compressed = match zstd::bulk::compress(text.as_bytes(), LEVEL) {
            Ok(c) => c,
            // Only allocation failure can make this fail; keep the text.
            Err(_) => return PackedConfig::plain(text),
        };
        let mut wire = String::with_capacity(PREFIX.len() + compressed.len() * 4 / 3 + 4);
        wire.push_str(PREFIX);
        base64::engine::general_purpose::STANDARD.encode_string(&compressed, &mut wire);
        PackedConfig { wire: wire.into() }
    }

    /// An uncompressed config (as entries written before packing held).
    pub fn plain(text: &str) -> PackedConfig {
        PackedConfig { wire: text.into() }
    }

    /// The config text.
    pub fn unpack(&self) -> Result<String, PackError> {
        let Some(b64) = self.wire.strip_prefix(PREFIX) else {
            return Ok(self.wire.to_string());
        };
        let compressed = base64::engine::general_purpose::STANDARD.decode(b64)?;
        let size = match zstd::zstd_safe::get_frame_content_size(&compressed) {
            Ok(Some(n)) => n,
            Ok(None) => return Err(PackError::Frame("no content size".into())),
            Err(e) => return Err(PackError::Frame(format!("{e:?}"))),
        };
        if size > MAX_UNPACKED_BYTES as u64 {
            return Err(PackError::TooLarge(size));
        }
        let bytes = zstd::bulk::decompress(&compressed, size as usize)?;
        Ok(String::from_utf8(bytes)?)
    }

    /// Bytes this config takes in an entry.
    pub fn packed_len(&self) -> usize {
        self.wire.len()
    }
}

impl fmt::Debug for PackedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the config itself (it may hold credentials).
        write!(f, "PackedConfig({} bytes)", self.wire.len())
    }
}

impl Serialize for PackedConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.wire)
    }
}

impl<'de> Deserialize<'de> for PackedConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = String::deserialize(d)?;
        Ok(PackedConfig { wire: wire.into() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_compresses() {
        let text: String = (0..2000)
            .map(|i| format!("{{\"name\":\"service-{i}\",\"url\":\"http://10.0.0.1/{i}\"}},"))
            .collect();
        let p = PackedConfig::pack(&text);
        assert!(
            p.packed_len() * 5 < text.len(),
            "{} vs {}",
            p.packed_len(),
            text.len()
        );
        assert_eq!(p.unpack().unwrap(), text);
        // Through JSON, as in the log and on the wire.
        let json = serde_json::to_string(&p).unwrap();
        let back: PackedConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.unpack().unwrap(), text);
        assert!(!format!("{p:?}").contains("service-1"));
    }

    #[test]
    fn plain_text_from_older_entries_reads_as_is() {
        let back: PackedConfig =
            serde_json::from_str("\"{\\\"_format_version\\\":\\\"3.0\\\"}\"").unwrap();
        assert_eq!(back.unpack().unwrap(), "{\"_format_version\":\"3.0\"}");
    }

    #[test]
    fn corrupt_packed_configs_are_errors_not_panics() {
        let bad = PackedConfig {
            wire: format!("{PREFIX}not base64!").into(),
        };
        assert!(matches!(bad.unpack(), Err(PackError::Base64(_))));
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"not zstd at all");
        let bad = PackedConfig {
            wire: format!("{PREFIX}{b64}").into(),
        };
        assert!(matches!(bad.unpack(), Err(PackError::Frame(_))));
    }
}
