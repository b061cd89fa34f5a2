//! Avatar uploads: today's profile flow (`<button open-type="chooseAvatar">` then
//! `wx.uploadFile`), where the server must accept the image itself.
//!
//! The image is taken from a `multipart/form-data` body exactly as `wx.uploadFile` sends it,
//! parsed with `multer` (the maintained parser behind axum and Rocket). multer is async, but the
//! whole body is already in memory (bounded), so its futures never wait: they are polled to
//! completion in place, with no runtime. The type is decided from the bytes, never from the
//! client's claims, and the image is addressed by its SHA-256, so the same bytes are stored once
//! and every node sharing the database serves the same URL.

use crate::error::Error;
use sha2::{Digest, Sha256};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// Largest image accepted.
pub const MAX_AVATAR_BYTES: usize = 2 * 1024 * 1024;
/// Room for the multipart framing and small text fields around the file.
pub const MAX_UPLOAD_BODY_BYTES: usize = MAX_AVATAR_BYTES + 16 * 1024;
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

/// A validated upload, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Avatar {
    /// Lowercase hex SHA-256 of the bytes: the content address.
    pub hash: String,
    pub image_type: ImageType,
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

/// Checks size and type and computes the content address.
pub fn validate(bytes: Vec<u8>) -> Result<Avatar, Error> {
    if bytes.len() > MAX_AVATAR_BYTES {
        return Err(Error::PayloadTooLarge {
            limit: MAX_AVATAR_BYTES,
        });
    }
    if bytes.is_empty() {
        return Err(Error::BadRequest("the file part is empty".into()));
    }
    let image_type = ImageType::sniff(&bytes).ok_or(Error::UnsupportedImage)?;
    let hash = crate::secret::hex(&Sha256::digest(&bytes));
    Ok(Avatar {
        hash,
        image_type,
        bytes,
    })
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
        assert_eq!(avatar.image_type, ImageType::Png);
        assert_eq!(avatar.bytes, PNG_1X1);
        assert_eq!(avatar.hash.len(), 64);
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
