//! Images that cannot hurt (issue #13, item 3), over HTTP on both backends: every upload is
//! decoded under limits and encoded again, so what is served is only pixels we wrote. EXIF and
//! whatever followed the image data are gone, decompression bombs are refused from their header,
//! and the content address is that of the served bytes. Test images are made here, with the
//! `image` crate and by hand, so no binary is committed.

use crate::helpers::{spawn_app_with_mock, start_mock_wechat, TestApp, TestDb};
use crate::on_both_backends;
use crate::profile::upload;
use image::codecs::gif::GifEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::{
    DynamicImage, Frame, GenericImageView, ImageFormat, ImageReader, Rgb, RgbImage, Rgba, RgbaImage,
};
use mock_wechat::MockWechat;
use sha2::{Digest, Sha256};
use std::io::Cursor;
use std::time::{Duration, Instant};

const RED: Rgb<u8> = Rgb([220, 20, 30]);
const BLUE: Rgb<u8> = Rgb([20, 40, 220]);
/// What a client appends to a valid image hoping we serve it from our domain.
const HTML: &[u8] = b"<html><script>alert(document.cookie)</script></html>";

fn logged_in(db: &TestDb) -> (MockWechat, TestApp, String) {
    let mock = start_mock_wechat(false);
    let app = spawn_app_with_mock(&mock, db);
    let token = app.login(&mock.new_code("img"));
    (mock, app, token)
}

/// Uploads `content`, expects a 200, and fetches the avatar it was stored as. Checks that the
/// URL names the SHA-256 of the served bytes with the extension and `Content-Type` of their
/// type, and returns the extension and the bytes.
fn stored(app: &TestApp, token: &str, content: &[u8], what: &str) -> (String, Vec<u8>) {
    let answer = upload(app, Some(token), "file", content);
    assert_eq!(answer.status, 200, "{what}: {}", answer.text);
    let url = answer.body["user"]["avatarUrl"].as_str().unwrap();
    let (status, bytes, headers) = app.get_bytes(&url[app.url.len()..], &[]);
    assert_eq!(status, 200, "{what}: GET {url}");
    let ext = url.rsplit_once('.').unwrap().1.to_string();
    let hash = hex(&Sha256::digest(&bytes));
    assert!(
        url.ends_with(&format!("/avatars/{hash}.{ext}")),
        "{what}: {url} is not the address of the served bytes ({hash})"
    );
    let expected_type = match ext.as_str() {
        "jpg" => "image/jpeg",
        "png" => "image/png",
        other => panic!("{what}: stored as .{other}, only JPEG and PNG are written"),
    };
    assert_eq!(headers["content-type"], expected_type, "{what}");
    assert_eq!(
        image::guess_format(&bytes).unwrap(),
        if ext == "jpg" {
            ImageFormat::Jpeg
        } else {
            ImageFormat::Png
        },
        "{what}: the bytes are what the extension says"
    );
    (ext, bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encode(image: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), format)
        .unwrap();
    bytes
}

/// A `width`×`height` opaque picture, red on the left half and blue on the right.
fn halves(width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, _| if x < width / 2 { RED } else { BLUE })
}

/// A picture with transparency: an opaque green square on a transparent background.
fn badge() -> RgbaImage {
    RgbaImage::from_fn(24, 24, |x, y| {
        if (6..18).contains(&x) && (6..18).contains(&y) {
            Rgba([10, 200, 90, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    })
}

/// Whether two colours are within a lossy encoder's reach of each other.
fn close(a: Rgb<u8>, b: Rgb<u8>) -> bool {
    a.0.iter().zip(b.0).all(|(x, y)| x.abs_diff(y) <= 24)
}

fn decoded(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).expect("the stored bytes decode")
}

/// A JPEG whose EXIF (APP1, spliced in after SOI) says "rotate 90° clockwise" and carries a GPS
/// latitude, as a phone photo does.
fn photo_with_exif() -> Vec<u8> {
    let mut tiff = b"MM\x00\x2a\x00\x00\x00\x08".to_vec();
    // IFD0 at 8: Orientation = 6, and the GPS IFD, which follows it at 8 + 2 + 2×12 + 4 = 38.
    tiff.extend_from_slice(&[0, 2]);
    tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
    tiff.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 38]);
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    // GPS IFD at 38: latitude N 39°54'27", its three rationals at 38 + 2 + 2×12 + 4 = 68.
    tiff.extend_from_slice(&[0, 2]);
    tiff.extend_from_slice(&[0x00, 0x01, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
    tiff.extend_from_slice(&[0x00, 0x02, 0, 5, 0, 0, 0, 3, 0, 0, 0, 68]);
    tiff.extend_from_slice(&[0, 0, 0, 0]);
    for (numerator, denominator) in [(39u32, 1u32), (54, 1), (2700, 100)] {
        tiff.extend_from_slice(&numerator.to_be_bytes());
        tiff.extend_from_slice(&denominator.to_be_bytes());
    }
    let mut app1 = b"Exif\x00\x00".to_vec();
    app1.extend_from_slice(&tiff);
    let mut jpeg = Vec::new();
    JpegEncoder::new_with_quality(&mut jpeg, 95)
        .encode_image(&halves(40, 20))
        .unwrap();
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&u16::try_from(app1.len() + 2).unwrap().to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn exif_and_gps_are_dropped_and_the_orientation_kept(db: &TestDb) {
    let (_mock, app, token) = logged_in(db);
    let photo = photo_with_exif();
    let mut reader = ImageReader::with_format(Cursor::new(&photo), ImageFormat::Jpeg)
        .into_decoder()
        .unwrap();
    assert!(
        image::ImageDecoder::exif_metadata(&mut reader)
            .unwrap()
            .is_some(),
        "the upload does carry EXIF"
    );

    let (ext, bytes) = stored(&app, &token, &photo, "photo with EXIF");

    assert_eq!(ext, "jpg", "{}", db.backend);
    for marker in [&b"Exif"[..], b"MM\x00\x2a", b"II\x2a\x00"] {
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "{}: {marker:?} in the stored bytes",
            db.backend
        );
    }
    let image = decoded(&bytes).to_rgb8();
    assert_eq!(
        image.dimensions(),
        (20, 40),
        "turned as the EXIF said, since the EXIF is gone"
    );
    assert!(
        close(*image.get_pixel(10, 5), RED),
        "the left half is on top"
    );
    assert!(close(*image.get_pixel(10, 34), BLUE));
}

fn html_after_the_image_is_not_served(db: &TestDb) {
    let (_mock, app, token) = logged_in(db);
    let png = encode(&DynamicImage::ImageRgba8(badge()), ImageFormat::Png);
    let jpeg = encode(&DynamicImage::ImageRgb8(halves(32, 16)), ImageFormat::Jpeg);

    for (image, ext, what) in [(png, "png", "PNG"), (jpeg, "jpg", "JPEG")] {
        let polyglot = [image.as_slice(), HTML].concat();
        let (stored_ext, bytes) = stored(&app, &token, &polyglot, what);

        assert_eq!(stored_ext, ext, "{}: {what}", db.backend);
        assert!(
            !bytes.windows(5).any(|w| w.eq_ignore_ascii_case(b"<html")),
            "{}: {what}: the HTML is served",
            db.backend
        );
        assert!(!bytes.windows(7).any(|w| w == b"<script"));
        let served = decoded(&bytes);
        let original = decoded(&image);
        assert_eq!(served.dimensions(), original.dimensions(), "{what}");
        if ext == "png" {
            assert_eq!(served.to_rgba8(), original.to_rgba8(), "PNG is lossless");
        }
    }
}

/// A PNG chunk: length, type, data, CRC-32 of type and data.
fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
    chunk.extend_from_slice(kind);
    chunk.extend_from_slice(data);
    let crc = crc32(&chunk[4..]);
    chunk.extend_from_slice(&crc.to_be_bytes());
    chunk
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                0xEDB8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG that is a header and nothing to decode: `width`×`height` RGBA at `bit_depth`, then an
/// empty zlib stream. A decoder that got past the header would allocate the pixels and then
/// fail for want of data (415): a 413 shows the refusal came from the header, before the pixel
/// buffer was allocated.
fn png_header(width: u32, height: u32, bit_depth: u8) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[bit_depth, 6, 0, 0, 0]);
    [
        &b"\x89PNG\r\n\x1a\n"[..],
        &png_chunk(b"IHDR", &ihdr),
        &png_chunk(b"IDAT", b"\x78\x9c\x03\x00\x00\x00\x00\x01"),
        &png_chunk(b"IEND", &[]),
    ]
    .concat()
}

/// A GIF whose screen and only frame are 65535×65535, with one pixel of data.
fn gif_header() -> Vec<u8> {
    let mut gif = b"GIF89a\xff\xff\xff\xff\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
    gif.extend_from_slice(b",\x00\x00\x00\x00\xff\xff\xff\xff\x00\x02\x02\x44\x01\x00;");
    gif
}

/// A baseline JPEG whose frame header says 65500×65500, with one block of data.
fn jpeg_header() -> Vec<u8> {
    let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xDB, 0x00, 0x43, 0x00];
    jpeg.extend_from_slice(&[1; 64]);
    jpeg.extend_from_slice(&[
        0xFF, 0xC0, 0x00, 0x0B, 0x08, 0xFF, 0xDC, 0xFF, 0xDC, 0x01, 0x01, 0x11, 0x00,
    ]);
    for class in [0x00, 0x10] {
        jpeg.extend_from_slice(&[0xFF, 0xC4, 0x00, 0x14, class, 0x01]);
        jpeg.extend_from_slice(&[0; 16]);
    }
    jpeg.extend_from_slice(&[
        0xFF, 0xDA, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3F, 0x00, 0x3F, 0xFF, 0xD9,
    ]);
    jpeg
}

/// A lossless WebP whose header (VP8L: signature, then 14 bits each of width - 1 and height - 1)
/// declares 16383×16383, followed by a few bytes of data.
fn webp_header() -> Vec<u8> {
    let vp8l = [&b"\x2f\xfe\xbf\xff\x0f"[..], &[0; 11]].concat();
    let mut chunk = b"VP8L".to_vec();
    chunk.extend_from_slice(&u32::try_from(vp8l.len()).unwrap().to_le_bytes());
    chunk.extend_from_slice(&vp8l);
    let mut webp = b"RIFF".to_vec();
    webp.extend_from_slice(&u32::try_from(4 + chunk.len()).unwrap().to_le_bytes());
    webp.extend_from_slice(b"WEBP");
    webp.extend_from_slice(&chunk);
    webp
}

fn decompression_bombs_are_refused_from_their_header(db: &TestDb) {
    let (_mock, app, token) = logged_in(db);
    let bombs = [
        (
            png_header(100_000, 100_000, 8),
            "PNG of 100000×100000 (37 GiB)",
        ),
        (
            png_header(4096, 4096, 16),
            "16-bit PNG of 4096×4096 (128 MiB)",
        ),
        (png_header(4097, 1, 8), "PNG one pixel wider than allowed"),
        (gif_header(), "GIF of 65535×65535"),
        (jpeg_header(), "JPEG of 65500×65500"),
        (webp_header(), "WebP of 16383×16383"),
    ];
    for (bomb, what) in bombs {
        let started = Instant::now();
        let answer = upload(&app, Some(&token), "file", &bomb);

        assert_eq!(
            answer.status, 413,
            "{}: {what}: {}",
            db.backend, answer.text
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what} took {:?}",
            started.elapsed()
        );
        assert_eq!(answer.body["status"], 413);
        let message = answer.body["message"].as_str().unwrap();
        assert!(message.contains("4096×4096"), "{what}: {message}");
    }
    assert_eq!(db.count_avatars(), 0, "{}: nothing stored", db.backend);
    assert!(app.get("/api/me", Some(&token)).body["user"]["avatarUrl"].is_null());
    assert_eq!(app.get("/healthz", None).status, 200, "still serving");
    let after = upload(
        &app,
        Some(&token),
        "file",
        &encode(&badge().into(), ImageFormat::Png),
    );
    assert_eq!(after.status, 200, "uploads still work: {}", after.text);
}

fn files_that_only_start_like_images_are_415(db: &TestDb) {
    let (_mock, app, token) = logged_in(db);
    let png = encode(&DynamicImage::ImageRgba8(badge()), ImageFormat::Png);
    let mut corrupt = png.clone();
    let data = corrupt.len() - 30;
    corrupt[data..data + 8].copy_from_slice(b"garbage!");
    let cases: [(&[u8], &str); 4] = [
        (&png[..png.len() / 2], "a PNG cut in half"),
        (&corrupt, "a PNG with corrupt pixel data"),
        (
            b"\xFF\xD8\xFF\xE0<html>not a JPEG</html>",
            "HTML behind a JPEG magic number",
        ),
        (
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00<svg onload=alert(1)>",
            "SVG behind a GIF header",
        ),
    ];
    for (content, what) in cases {
        let answer = upload(&app, Some(&token), "file", content);
        assert_eq!(
            answer.status, 415,
            "{}: {what}: {}",
            db.backend, answer.text
        );
    }
    assert_eq!(db.count_avatars(), 0, "{}: nothing stored", db.backend);
}

fn every_accepted_type_is_stored_re_encoded(db: &TestDb) {
    let (_mock, app, token) = logged_in(db);
    let opaque = DynamicImage::ImageRgb8(halves(48, 32));
    let transparent = DynamicImage::ImageRgba8(badge());
    let animated = {
        let mut gif = Vec::new();
        let frames = [RED, BLUE].map(|colour| {
            let [r, g, b] = colour.0;
            Frame::new(RgbaImage::from_pixel(16, 16, Rgba([r, g, b, 255])))
        });
        GifEncoder::new(&mut gif).encode_frames(frames).unwrap();
        gif
    };
    let cases = [
        (encode(&opaque, ImageFormat::Jpeg), "jpg", "JPEG"),
        (encode(&opaque, ImageFormat::Png), "jpg", "opaque PNG"),
        (
            encode(&transparent, ImageFormat::Png),
            "png",
            "PNG with alpha",
        ),
        (
            encode(&opaque.to_rgba8().into(), ImageFormat::WebP),
            "jpg",
            "opaque WebP",
        ),
        (
            encode(&transparent, ImageFormat::WebP),
            "png",
            "WebP with alpha",
        ),
        (
            encode(&transparent, ImageFormat::Gif),
            "png",
            "GIF with transparency",
        ),
        (animated, "jpg", "animated GIF"),
    ];
    for (content, ext, what) in cases {
        let (stored_ext, bytes) = stored(&app, &token, &content, what);

        assert_eq!(stored_ext, ext, "{}: {what}", db.backend);
        assert_ne!(bytes, content, "{what}: stored as uploaded");
        let served = decoded(&bytes);
        let original = decoded(&content);
        assert_eq!(served.dimensions(), original.dimensions(), "{what}");
        if ext == "png" {
            assert_eq!(served.to_rgba8(), original.to_rgba8(), "{what}: lossless");
        } else {
            let (served, original) = (served.to_rgb8(), original.to_rgb8());
            for (x, y) in [(2, 2), (served.width() - 3, served.height() - 3)] {
                assert!(
                    close(*served.get_pixel(x, y), *original.get_pixel(x, y)),
                    "{what}: at {x},{y}"
                );
            }
        }
        if what == "animated GIF" {
            assert!(close(*served.to_rgb8().get_pixel(8, 8), RED), "first frame");
        }
    }
}

fn large_images_are_scaled_down_and_stored_once(db: &TestDb) {
    let (_mock, app, token) = logged_in(db);
    let large = encode(
        &DynamicImage::ImageRgb8(halves(1400, 700)),
        ImageFormat::Png,
    );

    let (ext, bytes) = stored(&app, &token, &large, "1400×700 PNG");
    let again = stored(&app, &token, &large, "the same again");

    assert_eq!(ext, "jpg");
    let image = decoded(&bytes).to_rgb8();
    assert_eq!(image.dimensions(), (640, 320), "fits 640×640, same aspect");
    assert!(close(*image.get_pixel(100, 160), RED));
    assert!(close(*image.get_pixel(540, 160), BLUE));
    assert_eq!(again.1, bytes, "re-encoding is deterministic");
    assert_eq!(db.count_avatars(), 1, "{}: stored once", db.backend);
}

on_both_backends!(
    exif_and_gps_are_dropped_and_the_orientation_kept,
    html_after_the_image_is_not_served,
    decompression_bombs_are_refused_from_their_header,
    files_that_only_start_like_images_are_415,
    every_accepted_type_is_stored_re_encoded,
    large_images_are_scaled_down_and_stored_once,
);
