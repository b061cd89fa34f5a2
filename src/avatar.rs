//! Avatar uploads: today's profile flow (`<button open-type="chooseAvatar">` then
//! `wx.uploadFile`), where the server must accept the image itself.
//!
//! The image is taken from a `multipart/form-data` body exactly as `wx.uploadFile` sends it,
//! parsed with `multer` (the maintained parser behind axum and Rocket). multer is async, but the
//! whole body is already in memory (bounded), so its futures never wait: they are polled to
//! completion in place, with no runtime. The type is decided from the bytes, never from the
//! client's claims.
//!
//! What is stored is never what was uploaded: the image is decoded under limits and encoded
//! again, so the bytes we serve from our domain are pixels we wrote ourselves. That drops EXIF
//! (phone photos carry GPS positions), comments, ICC profiles and whatever a client appended
//! after the image data (an HTML page, a ZIP), and a decompression bomb is refused from its
//! header instead of being allocated. The stored image is addressed by the SHA-256 of the
//! re-encoded bytes, so the same picture is stored once and every node sharing the database
//! serves the same URL.

use crate::error::Error;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType as PngFilter, PngEncoder};
use image::imageops::FilterType;
use image::{
    DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageFormat, ImageReader,
};
use image::{ImageError, Limits};
use sha2::{Digest, Sha256};
use std::future::Future;
use std::io::Cursor;
use std::pin::pin;
use std::sync::{Condvar, Mutex};
use std::task::{Context, Poll, Waker};

/// Largest image accepted.
pub const MAX_AVATAR_BYTES: usize = 2 * 1024 * 1024;
/// Room for the multipart framing and small text fields around the file.
pub const MAX_UPLOAD_BODY_BYTES: usize = MAX_AVATAR_BYTES + 16 * 1024;
/// Widest and tallest image decoded: a 16-megapixel photo, more than an avatar ever needs.
/// Checked against the header before any pixel is allocated (a strict limit in `image`).
pub const MAX_SIDE: u32 = 4096;
/// Most bytes the decoded pixels may take: 4096×4096 RGBA at 8 bits. A 16-bit or wider image of
/// that size is refused too; checked against the header like the sides.
pub const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;
/// Longest side of what we store. WeChat shows avatars at 132 px; 640 leaves room for retina
/// screens and keeps the stored image small whatever was uploaded.
pub const STORED_SIDE: u32 = 640;
/// JPEG quality of what we store: no visible loss at avatar sizes.
const JPEG_QUALITY: u8 = 85;
/// Uploads decoded at the same time. With 1,024 connections, unbounded decoding could hold 1,024 ×
/// ~90 MiB; decoding is CPU-bound, so a small bound costs no throughput and caps the memory
/// every upload in flight can take at once.
const CONCURRENT_DECODES: usize = 2;
/// Stack of the thread each upload is decoded on. Connection threads have 256 KiB, which is not enough:
/// measured on a 1500×1100 image of each type, decoding, scaling and encoding needs under
/// 128 KiB optimised but between 256 and 512 KiB in a debug build (a translucent PNG, written
/// as PNG again, overflowed 256 KiB), and what a codec needs can depend on the file. A thread of its own with room to spare is
/// cheap next to a decode (its stack is reserved, not touched, and at most
/// [`CONCURRENT_DECODES`] exist), leaves the connection threads small, and keeps a decoder panic
/// off the connection's thread.
const DECODE_STACK_BYTES: usize = 2 * 1024 * 1024;
/// `wx.uploadFile`'s usual file field name.
const FILE_FIELD: &str = "file";

/// An image type we accept, with what we serve it as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageType {
    Jpeg,
    Png,
    Webp,
    Gif,
}

impl ImageType {
    /// Sniffs the type from the file's first bytes (its magic number).
    pub fn sniff(bytes: &[u8]) -> Option<ImageType> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageType::Jpeg)
        } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageType::Png)
        } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
            Some(ImageType::Webp)
        } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
            Some(ImageType::Gif)
        } else {
            None
        }
    }

    /// The decoder for this type.
    fn format(self) -> ImageFormat {
        match self {
            ImageType::Jpeg => ImageFormat::Jpeg,
            ImageType::Png => ImageFormat::Png,
            ImageType::Webp => ImageFormat::WebP,
            ImageType::Gif => ImageFormat::Gif,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImageType::Jpeg => "image/jpeg",
            ImageType::Png => "image/png",
            ImageType::Webp => "image/webp",
            ImageType::Gif => "image/gif",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageType::Jpeg => "jpg",
            ImageType::Png => "png",
            ImageType::Webp => "webp",
            ImageType::Gif => "gif",
        }
    }
}

/// An upload decoded and re-encoded, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avatar {
    /// Lowercase hex SHA-256 of `bytes`: the content address.
    pub hash: String,
    /// The type of `bytes` (JPEG or PNG), whatever type was uploaded.
    pub image_type: ImageType,
    /// The re-encoded image: nothing of the upload but its pixels.
    pub bytes: Vec<u8>,
}

impl Avatar {
    /// `<hash>.<ext>`, the file name in `/avatars/`.
    pub fn file_name(&self) -> String {
        format!("{}.{}", self.hash, self.image_type.extension())
    }
}

/// Takes the image out of a `multipart/form-data` body whose `Content-Type` is `content_type`.
pub fn from_multipart(content_type: &str, body: Vec<u8>) -> Result<Avatar, Error> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|_| Error::BadRequest("the multipart Content-Type has no boundary".into()))?;
    let stream = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(body)]);
    let mut multipart = multer::Multipart::new(stream, boundary);
    let bytes = complete(async move {
        while let Some(field) = multipart.next_field().await? {
            if field.name() == Some(FILE_FIELD) {
                return field.bytes().await.map(Some);
            }
        }
        Ok(None)
    })
    .map_err(|_| Error::BadRequest("the multipart body is malformed".into()))?
    .ok_or_else(|| {
        Error::BadRequest(format!(
            "no file part named \"{FILE_FIELD}\": upload with wx.uploadFile({{ name: '{FILE_FIELD}', … }})"
        ))
    })?;
    validate(bytes.to_vec())
}

/// Checks size and type, then decodes under limits and re-encodes: the stored image and its
/// content address are those of the re-encoded bytes.
pub fn validate(bytes: Vec<u8>) -> Result<Avatar, Error> {
    if bytes.len() > MAX_AVATAR_BYTES {
        return Err(Error::PayloadTooLarge {
            limit: MAX_AVATAR_BYTES,
        });
    }
    if bytes.is_empty() {
        return Err(Error::BadRequest("the file part is empty".into()));
    }
    let uploaded = ImageType::sniff(&bytes).ok_or(Error::UnsupportedImage)?;
    let (image_type, bytes) = {
        let _permit = DecodePermit::acquire();
        std::thread::Builder::new()
            .name("wxlogin-decode".into())
            .stack_size(DECODE_STACK_BYTES)
            .spawn(move || reencode(&bytes, uploaded))
            .map_err(|e| Error::Internal(format!("cannot start a decoding thread: {e}")))?
            .join()
            .map_err(|_| Error::Internal("the image decoder panicked".into()))??
    };
    let hash = crate::secret::hex(&Sha256::digest(&bytes));
    Ok(Avatar {
        hash,
        image_type,
        bytes,
    })
}

/// Decodes `bytes` as `uploaded` and encodes the pixels again: JPEG for anything opaque (photos
/// above all), PNG when some pixel is transparent. Animated GIFs keep their first frame.
///
/// The sides and the decoded size are read from the header and checked before the pixel buffer
/// is allocated, so a small file declaring a huge image costs nothing (413). Larger images are
/// scaled down to fit [`STORED_SIDE`], and the EXIF orientation is applied to the pixels, since
/// the EXIF block that carried it is not written again.
fn reencode(bytes: &[u8], uploaded: ImageType) -> Result<(ImageType, Vec<u8>), Error> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    let mut reader = ImageReader::with_format(Cursor::new(bytes), uploaded.format());
    reader.limits(limits);
    // Building the decoder reads the header and checks the sides against the limits.
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(Error::UnsupportedImage);
    }
    // `max_alloc` is best effort inside the decoders; the output buffer is checked here.
    if decoder.total_bytes() > MAX_DECODED_BYTES {
        return Err(Error::ImageTooLarge);
    }
    // An unreadable EXIF block is not worth refusing the picture over: it is dropped anyway.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut image = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    if width > STORED_SIDE || height > STORED_SIDE {
        image = shrink(&image);
    }
    image.apply_orientation(orientation);
    encode(&image)
}

/// Scales `image` down to fit [`STORED_SIDE`] square, keeping its aspect ratio. Lanczos3 gives
/// the sharpest result; from far larger images, an area average first brings the image to
/// twice the target, which is as good for the eye and spares Lanczos' full-height intermediate
/// buffer (16 bytes a pixel) of the original.
fn shrink(image: &DynamicImage) -> DynamicImage {
    let twice = 2 * STORED_SIDE;
    if image.width() > twice || image.height() > twice {
        image
            .thumbnail(twice, twice)
            .resize(STORED_SIDE, STORED_SIDE, FilterType::Lanczos3)
    } else {
        image.resize(STORED_SIDE, STORED_SIDE, FilterType::Lanczos3)
    }
}

/// Writes the pixels as PNG if any is transparent, else as JPEG. Failures here are ours: the
/// pixels were decoded, so any image can be encoded.
fn encode(image: &DynamicImage) -> Result<(ImageType, Vec<u8>), Error> {
    let failed = |e: ImageError| Error::Internal(format!("re-encoding an avatar: {e}"));
    let mut out = Vec::new();
    if image.color().has_alpha() {
        let rgba = image.to_rgba8();
        if rgba.pixels().any(|p| p.0[3] != u8::MAX) {
            PngEncoder::new_with_quality(&mut out, CompressionType::Default, PngFilter::Adaptive)
                .write_image(
                    rgba.as_raw(),
                    rgba.width(),
                    rgba.height(),
                    ExtendedColorType::Rgba8,
                )
                .map_err(failed)?;
            return Ok((ImageType::Png, out));
        }
    }
    JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode_image(&image.to_rgb8())
        .map_err(failed)?;
    Ok((ImageType::Jpeg, out))
}

/// What a decoding failure means for the client: over our limits (413), or not an image of the
/// type its first bytes claim (415).
fn undecodable(e: ImageError) -> Error {
    match e {
        ImageError::Limits(_) => Error::ImageTooLarge,
        _ => Error::UnsupportedImage,
    }
}

/// One of the [`CONCURRENT_DECODES`] slots, held while an upload is decoded and encoded.
struct DecodePermit;

/// Slots in use, and the signal that one was freed.
static DECODING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());

impl DecodePermit {
    /// Waits for a free slot. Never poisoned in effect: the count is only changed by these two
    /// short sections, which cannot panic between reading and writing it.
    fn acquire() -> DecodePermit {
        let (count, freed) = &DECODING;
        let mut in_use = count.lock().unwrap_or_else(|p| p.into_inner());
        while *in_use >= CONCURRENT_DECODES {
            in_use = freed.wait(in_use).unwrap_or_else(|p| p.into_inner());
        }
        *in_use += 1;
        DecodePermit
    }
}

impl Drop for DecodePermit {
    /// Frees the slot even when the decoder panicked, so a bug never shrinks the pool.
    fn drop(&mut self) {
        let (count, freed) = &DECODING;
        *count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
        freed.notify_one();
    }
}

/// Splits `<64 hex>.<ext>` into the hash and the type its extension names.
pub fn parse_file_name(name: &str) -> Option<(&str, ImageType)> {
    let (hash, ext) = name.split_once('.')?;
    let valid_hash =
        hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let image_type = [
        ImageType::Jpeg,
        ImageType::Png,
        ImageType::Webp,
        ImageType::Gif,
    ]
    .into_iter()
    .find(|t| t.extension() == ext)?;
    valid_hash.then_some((hash, image_type))
}

/// Runs a future whose inputs are all in memory to completion in this thread. Nothing it
/// awaits can be pending for long, so it is polled in a loop with a waker that does nothing.
fn complete<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::yield_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const PNG_1X1: &[u8] = &[
        0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F,
        0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0A, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00,
        0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49,
        0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
    ];

    fn multipart(field: &str, filename: &str, content: &[u8]) -> (String, Vec<u8>) {
        let boundary = "----WxUploadBoundary7MA4YWxkTrZu0gW";
        let mut body = Vec::new();
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nx\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }

    #[test]
    fn image_types_are_sniffed_from_their_bytes() {
        let cases: &[(&[u8], Option<ImageType>)] = &[
            (PNG_1X1, Some(ImageType::Png)),
            (&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10], Some(ImageType::Jpeg)),
            (b"RIFF\x24\0\0\0WEBPVP8 ", Some(ImageType::Webp)),
            (b"GIF89a\x01\0\x01\0", Some(ImageType::Gif)),
            (b"<svg xmlns=", None),
            (b"RIFF\x24\0\0\0WAVEfmt ", None),
            (b"", None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                ImageType::sniff(bytes),
                *expected,
                "{:?}",
                &bytes[..bytes.len().min(8)]
            );
        }
    }

    #[test]
    fn upload_as_wx_upload_file_sends_it_is_read() {
        let (content_type, body) = multipart("file", "tmp_abc.png", PNG_1X1);
        let avatar = from_multipart(&content_type, body).unwrap();
        assert_eq!(
            avatar.image_type,
            ImageType::Png,
            "its pixel is transparent"
        );
        assert_eq!(
            image::load_from_memory(&avatar.bytes).unwrap(),
            image::load_from_memory(PNG_1X1).unwrap(),
            "the same pixels, written again"
        );
        assert_eq!(
            avatar.hash,
            crate::secret::hex(&Sha256::digest(&avatar.bytes))
        );
        assert_eq!(
            parse_file_name(&avatar.file_name()),
            Some((avatar.hash.as_str(), ImageType::Png))
        );
    }

    #[test]
    fn uploads_without_a_usable_image_are_refused_with_their_status() {
        let big = {
            let mut b = PNG_1X1.to_vec();
            b.resize(MAX_AVATAR_BYTES + 1, 0);
            b
        };
        type Upload = (String, Vec<u8>);
        let cases: Vec<(Upload, u16, &str)> = vec![
            (multipart("avatar", "a.png", PNG_1X1), 400, "no file part"),
            (multipart("file", "a.txt", b"hello"), 415, "not an image"),
            (multipart("file", "a.png", &big), 413, "over 2 MiB"),
            (multipart("file", "a.png", b""), 400, "empty"),
            (
                ("multipart/form-data".to_string(), b"x".to_vec()),
                400,
                "no boundary",
            ),
            (
                (
                    "multipart/form-data; boundary=zz".to_string(),
                    b"garbage".to_vec(),
                ),
                400,
                "malformed",
            ),
        ];
        for ((content_type, body), status, what) in cases {
            let err = from_multipart(&content_type, body).expect_err(what);
            assert_eq!(err.status(), status, "{what}: {err}");
        }
    }

    /// Workers run with a 256 KiB stack (`WORKER_STACK_BYTES` in `src/http/server.rs`), which
    /// a debug build overflows on a translucent image (decoded, scaled and written as PNG):
    /// uploads of every type must still go through from such a thread, because the decoding
    /// runs on a thread of its own.
    #[test]
    fn every_type_is_decoded_from_a_thread_with_a_connection_stack() {
        let translucent = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(800, 300, |x, y| {
            image::Rgba([(x % 256) as u8, (y % 256) as u8, 90, (x % 200) as u8])
        }));
        for (format, stored_as) in [
            (ImageFormat::Jpeg, ImageType::Jpeg),
            (ImageFormat::Png, ImageType::Png),
            (ImageFormat::WebP, ImageType::Png),
            (ImageFormat::Gif, ImageType::Png),
        ] {
            let mut bytes = Vec::new();
            let encodable = match format {
                ImageFormat::Jpeg => DynamicImage::ImageRgb8(translucent.to_rgb8()),
                _ => translucent.clone(),
            };
            encodable
                .write_to(&mut Cursor::new(&mut bytes), format)
                .unwrap();
            let stored = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || validate(bytes))
                .unwrap()
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("{format:?}: {e}"));
            let decoded = image::load_from_memory(&stored.bytes).unwrap();
            assert_eq!(stored.image_type, stored_as, "{format:?}");
            assert_eq!(
                (decoded.width(), decoded.height()),
                (640, 240),
                "{format:?}"
            );
        }
    }

    #[test]
    fn file_names_must_be_a_hash_and_a_known_extension() {
        let hash = "a".repeat(64);
        assert!(parse_file_name(&format!("{hash}.png")).is_some());
        for bad in [
            format!("{hash}.svg"),
            format!("{}.png", "A".repeat(64)),
            format!("{}.png", "a".repeat(63)),
            "../etc/passwd".to_string(),
            hash.clone(),
        ] {
            assert_eq!(parse_file_name(&bad), None, "{bad}");
        }
    }
}
