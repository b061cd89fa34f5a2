// Tiny, valid images made byte by byte, so the tests need no image library and no fixtures.
import { deflateSync } from 'node:zlib';

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) {
    c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  }
  return c >>> 0;
});

/** CRC-32 (ISO-HDLC), as PNG chunks use it. */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) {
    c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * A 1×1 RGBA PNG of the given colour. With `size`, a private ancillary chunk (`prVt`, which
 * decoders skip) pads the file to exactly `size` bytes: still a valid PNG, just big.
 */
export function png({ rgba = [0x07, 0xc1, 0x60, 0xff], size } = {}) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(1, 0); // width
  ihdr.writeUInt32BE(1, 4); // height
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // colour type: RGBA
  // compression 0, filter 0, interlace 0
  const scanline = Buffer.from([0 /* filter: none */, ...rgba]);
  const parts = [PNG_SIGNATURE, pngChunk('IHDR', ihdr), pngChunk('IDAT', deflateSync(scanline))];
  const iend = pngChunk('IEND', Buffer.alloc(0));
  if (size !== undefined) {
    const used = parts.reduce((n, p) => n + p.length, 0) + iend.length;
    const padding = size - used - 12; // a chunk costs 12 bytes besides its data
    if (padding < 0) {
      throw new Error(`a PNG cannot be as small as ${size} bytes`);
    }
    parts.push(pngChunk('prVt', Buffer.alloc(padding, 0x2a)));
  }
  parts.push(iend);
  const out = Buffer.concat(parts);
  if (size !== undefined && out.length !== size) {
    throw new Error(`padded PNG is ${out.length} bytes, wanted ${size}`);
  }
  return out;
}

/**
 * A 1×1 grey baseline JPEG (JFIF), the smallest honest one: one 8×8 block whose samples are all
 * 128, so after the level shift every coefficient is 0. Both Huffman tables hold one symbol
 * (code '0'): DC category 0, then AC end-of-block. Entropy data: bits 00, padded with 1s → 0x3F.
 */
export function jpeg() {
  return Buffer.from([
    0xff, 0xd8, // SOI
    0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, // APP0 "JFIF\0"
    0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, // v1.1, no units, 1:1, no thumbnail
    0xff, 0xdb, 0x00, 0x43, 0x00, ...new Array(64).fill(0x01), // DQT table 0: all ones
    0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x01, 0x00, 0x01, // SOF0: 8 bit, 1×1
    0x01, 0x01, 0x11, 0x00, // one component: id 1, 1×1 sampling, table 0
    0xff, 0xc4, 0x00, 0x14, 0x00, 0x01, ...new Array(15).fill(0), 0x00, // DHT DC 0: '0' → 0
    0xff, 0xc4, 0x00, 0x14, 0x10, 0x01, ...new Array(15).fill(0), 0x00, // DHT AC 0: '0' → EOB
    0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00, // SOS: component 1, tables 0/0
    0x3f, // DC diff 0 ('0'), EOB ('0'), padding 1s
    0xff, 0xd9 // EOI
  ]);
}

/** A 1×1 transparent GIF89a. */
export function gif() {
  return Buffer.from('R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7', 'base64');
}

/** A 1×1 lossless WebP (RIFF/WEBP/VP8L). */
export function webp() {
  return Buffer.from('UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==', 'base64');
}
