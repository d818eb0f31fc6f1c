//! The record codecs of Kafka's batches, both ways, for the two places ferry opens a client's
//! records: converting old message sets (`legacy`) and compacting a topic (`retain`). Inflating
//! is bounded by [`INFLATED_BYTES_MAX`], so a compression bomb costs an error, not the broker's
//! memory.

use std::io::{Read, Write};

use crate::batch::Compression;

/// The most bytes one compressed message or batch may inflate to. Kafka inflates old message
/// sets and the batches of compacted topics too; the bound keeps a compression bomb from taking
/// the broker's memory (other batches are stored and served compressed, never inflated).
pub const INFLATED_BYTES_MAX: usize = 32 << 20;

/// The framing Kafka's Java clients write around snappy blocks (snappy-java's stream format).
const XERIAL_HEADER: &[u8] = b"\x82SNAPPY\x00";
/// The xerial header: magic (8 bytes), version and compatible version (4 bytes each).
const XERIAL_HEADER_BYTES: usize = 16;
/// The xerial version and compatible version snappy-java writes.
const XERIAL_VERSION: i32 = 1;
/// The uncompressed size of one xerial block snappy-java writes (its default block size).
const XERIAL_BLOCK_BYTES: usize = 32 << 10;

/// Inflates `compressed` within [`INFLATED_BYTES_MAX`].
pub fn inflate(compression: Compression, compressed: &[u8]) -> Result<Vec<u8>, String> {
    let limit = INFLATED_BYTES_MAX as u64 + 1;
    let mut out = Vec::new();
    let read = match compression {
        Compression::None => return Ok(compressed.to_vec()),
        Compression::Gzip => flate2::read::MultiGzDecoder::new(compressed)
            .take(limit)
            .read_to_end(&mut out),
        Compression::Lz4 => lz4::Decoder::new(compressed)
            .and_then(|decoder| decoder.take(limit).read_to_end(&mut out)),
        Compression::Zstd => zstd::stream::read::Decoder::new(compressed)
            .and_then(|decoder| decoder.take(limit).read_to_end(&mut out)),
        Compression::Snappy => return inflate_snappy(compressed),
    };
    read.map_err(|e| format!("inflate {compression:?}: {e}"))?;
    if out.len() > INFLATED_BYTES_MAX {
        return Err(format!(
            "{compression:?} data inflates beyond {INFLATED_BYTES_MAX} bytes"
        ));
    }
    Ok(out)
}

/// Compresses `data` as Kafka's clients do for a v2 batch: gzip, snappy in xerial framing (which
/// every client reads; librdkafka also reads it raw), LZ4 frames with independent blocks (what
/// the Java client's reader requires), zstd at its default level.
pub fn deflate(compression: Compression, data: &[u8]) -> Result<Vec<u8>, String> {
    let fail = |e: std::io::Error| format!("deflate {compression:?}: {e}");
    match compression {
        Compression::None => Ok(data.to_vec()),
        Compression::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data).map_err(fail)?;
            encoder.finish().map_err(fail)
        }
        Compression::Lz4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .block_mode(lz4::BlockMode::Independent)
                .checksum(lz4::ContentChecksum::NoChecksum)
                .build(Vec::new())
                .map_err(fail)?;
            encoder.write_all(data).map_err(fail)?;
            let (out, result) = encoder.finish();
            result.map_err(fail)?;
            Ok(out)
        }
        Compression::Zstd => zstd::stream::encode_all(data, 0).map_err(fail),
        Compression::Snappy => {
            let mut out = XERIAL_HEADER.to_vec();
            out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
            out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK_BYTES) {
                let compressed = encoder
                    .compress_vec(block)
                    .map_err(|e| format!("deflate snappy: {e}"))?;
                out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
    }
}

/// Snappy as Kafka clients write it: xerial blocks (a 16-byte header, then length-prefixed
/// raw blocks), or one raw block (librdkafka without the framing).
fn inflate_snappy(compressed: &[u8]) -> Result<Vec<u8>, String> {
    let mut blocks = Vec::new();
    if compressed.starts_with(XERIAL_HEADER) && compressed.len() >= XERIAL_HEADER_BYTES {
        let mut rest = &compressed[XERIAL_HEADER_BYTES..];
        while !rest.is_empty() {
            if rest.len() < 4 {
                return Err("snappy block length cut short".into());
            }
            let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            rest = &rest[4..];
            if length > rest.len() {
                return Err("snappy block overruns the data".into());
            }
            blocks.push(&rest[..length]);
            rest = &rest[length..];
        }
    } else {
        blocks.push(compressed);
    }
    let mut out = Vec::new();
    for block in blocks {
        let length = snap::raw::decompress_len(block).map_err(|e| format!("snappy: {e}"))?;
        if out.len() + length > INFLATED_BYTES_MAX {
            return Err(format!(
                "Snappy data inflates beyond {INFLATED_BYTES_MAX} bytes"
            ));
        }
        let start = out.len();
        out.resize(start + length, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| format!("snappy: {e}"))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_be_bytes())
            .collect();
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let packed = deflate(codec, &data).unwrap();
            if codec != Compression::None {
                assert!(packed.len() < data.len(), "{codec:?} compresses");
            }
            assert_eq!(inflate(codec, &packed).unwrap(), data, "{codec:?}");
        }
    }

    #[test]
    fn a_compression_bomb_is_refused_not_inflated() {
        // Zeros compress about 1000:1; this inflates to twice the limit.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..((2 * INFLATED_BYTES_MAX) >> 20) {
            encoder.write_all(&zeros).unwrap();
        }
        let bomb = encoder.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "the bomb is small: {}", bomb.len());
        let error = inflate(Compression::Gzip, &bomb).unwrap_err();
        assert!(error.contains("beyond"), "{error}");
        // Control: the same codec inflates a small payload.
        let small = deflate(Compression::Gzip, &zeros).unwrap();
        assert_eq!(inflate(Compression::Gzip, &small).unwrap(), zeros);
    }
}
