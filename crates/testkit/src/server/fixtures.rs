//! Fixed payloads the fixture server hands out: a tiny PNG, a tiny WAV, and the texts the
//! conformance scenarios look for, kept in one place so tools, resources and prompts agree.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A 1x1 red pixel PNG (RGB, 8 bit), base64-encoded.
pub const RED_PIXEL_PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mP4z8AAAAMBAQD3A0FDAAAAAElFTkSuQmCC";

/// MIME type of [`RED_PIXEL_PNG_BASE64`].
pub const PNG_MIME: &str = "image/png";

/// MIME type of [`silent_wav_base64`].
pub const WAV_MIME: &str = "audio/wav";

/// Text of the `test_simple_text` tool.
pub const SIMPLE_TEXT: &str = "This is a simple text response for testing.";

/// Text of the `test://static-text` resource.
pub const STATIC_TEXT: &str = "This is the content of the static text resource.";

/// Text of the resource embedded by `test_embedded_resource`.
pub const EMBEDDED_TEXT: &str = "This is an embedded resource content.";

/// Text returned by `test_reconnection` once the client has resumed.
pub const RECONNECTION_DONE: &str = "Reconnection test completed successfully";

/// Sample rate of the generated WAV clip.
const WAV_SAMPLE_RATE: u32 = 8_000;
/// Number of 16-bit mono samples in the generated WAV clip (10 ms).
const WAV_SAMPLES: u32 = 80;

/// A 10 ms mono 16-bit PCM WAV of silence, base64-encoded.
///
/// Built from the RIFF layout rather than stored, so the header fields are visibly right.
pub fn silent_wav_base64() -> String {
    let data_len = WAV_SAMPLES * 2;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVE");
    wav.extend_from_slice(b"fmt ");
    wav.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&WAV_SAMPLE_RATE.to_le_bytes());
    wav.extend_from_slice(&(WAV_SAMPLE_RATE * 2).to_le_bytes()); // byte rate
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.resize(44 + data_len as usize, 0);
    STANDARD.encode(wav)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_decodes_to_a_png_with_one_pixel() {
        let bytes = STANDARD.decode(RED_PIXEL_PNG_BASE64).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 1);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), 1);
    }

    #[test]
    fn wav_has_consistent_riff_sizes() {
        let bytes = STANDARD.decode(silent_wav_base64()).unwrap();
        assert_eq!(&bytes[..4], b"RIFF");
        assert_eq!(&bytes[8..12], b"WAVE");
        let riff_len = u32::from_le_bytes(bytes[4..8].try_into().unwrap()) as usize;
        assert_eq!(riff_len + 8, bytes.len());
        let data_len = u32::from_le_bytes(bytes[40..44].try_into().unwrap()) as usize;
        assert_eq!(data_len + 44, bytes.len());
    }
}
