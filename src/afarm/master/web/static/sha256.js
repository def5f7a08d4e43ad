// SPDX-License-Identifier: MIT
// SHA-256 (FIPS 180-4) of a file read in parts: the job port stores uploads by their sha256.
// Not crypto.subtle: it exists only in secure contexts (not on http://LAN-ADDRESS) and
// hashes one buffer whole, which for a large .blend would hold it all in memory.
"use strict";
(function () {
  const K = new Uint32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);
  const H0 = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

  class Sha256 {
    constructor() {
      this.h = new Uint32Array(H0);
      this.buf = new Uint8Array(64);
      this.len = 0;
      this.total = 0;
      this.w = new Uint32Array(64);
    }

    update(data) {
      let i = 0;
      this.total += data.length;
      if (this.len) {
        const n = Math.min(64 - this.len, data.length);
        this.buf.set(data.subarray(0, n), this.len);
        this.len += n;
        i = n;
        if (this.len < 64) return;
        this.block(this.buf, 0);
        this.len = 0;
      }
      for (; i + 64 <= data.length; i += 64) this.block(data, i);
      if (i < data.length) {
        this.buf.set(data.subarray(i), 0);
        this.len = data.length - i;
      }
    }

    block(d, off) {
      const w = this.w, h = this.h;
      for (let t = 0; t < 16; t++) {
        const j = off + 4 * t;
        w[t] = (d[j] << 24) | (d[j + 1] << 16) | (d[j + 2] << 8) | d[j + 3];
      }
      for (let t = 16; t < 64; t++) {
        const a = w[t - 15], b = w[t - 2];
        const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
        const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
        w[t] = (w[t - 16] + s0 + w[t - 7] + s1) | 0;
      }
      let a = h[0], b = h[1], c = h[2], e = h[3], f = h[4], g = h[5], k = h[6], l = h[7];
      // (a, b, c, e, f, g, k, l) stand for the standard's (a, b, c, d, e, f, g, h)
      for (let t = 0; t < 64; t++) {
        const S1 = ((f >>> 6) | (f << 26)) ^ ((f >>> 11) | (f << 21)) ^ ((f >>> 25) | (f << 7));
        const ch = (f & g) ^ (~f & k);
        const t1 = (l + S1 + ch + K[t] + w[t]) | 0;
        const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
        const maj = (a & b) ^ (a & c) ^ (b & c);
        const t2 = (S0 + maj) | 0;
        l = k; k = g; g = f; f = (e + t1) | 0; e = c; c = b; b = a; a = (t1 + t2) | 0;
      }
      h[0] += a; h[1] += b; h[2] += c; h[3] += e; h[4] += f; h[5] += g; h[6] += k; h[7] += l;
    }

    hex() {
      const bits = this.total * 8;
      const pad = new Uint8Array(((this.len < 56 ? 56 : 120) - this.len) + 8);
      pad[0] = 0x80;
      const hi = Math.floor(bits / 0x100000000), lo = bits >>> 0;
      const n = pad.length;
      pad[n - 8] = hi >>> 24; pad[n - 7] = hi >>> 16; pad[n - 6] = hi >>> 8; pad[n - 5] = hi;
      pad[n - 4] = lo >>> 24; pad[n - 3] = lo >>> 16; pad[n - 2] = lo >>> 8; pad[n - 1] = lo;
      const total = this.total;
      this.update(pad);
      this.total = total;
      return Array.from(this.h, (x) => x.toString(16).padStart(8, "0")).join("");
    }
  }

  // The sha256 of a File (or Blob), read 4 MiB at a time; progress(done, size) after each.
  async function sha256File(file, progress) {
    const s = new Sha256();
    const step = 4 << 20;
    for (let at = 0; at < file.size; at += step) {
      s.update(new Uint8Array(await file.slice(at, at + step).arrayBuffer()));
      if (progress) progress(Math.min(at + step, file.size), file.size);
    }
    return s.hex();
  }

  window.afarmSha256 = { Sha256, sha256File };
})();
