#!/usr/bin/env node
// Mints a signed loyalty cookie value (docs/cookie-signing.md).
//
// require() this file in the shop's login code and call sign(), or run
//     node sign.js KEY_HEX ID EXPIRES
// to print a value.  Node.js's own crypto module only, no npm packages.

'use strict';

const crypto = require('crypto');

function sign(id, expires, keyHex) {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    throw new RangeError('id must be 1 to 64 of A-Z a-z 0-9 _ -');
  }
  if (!Number.isSafeInteger(expires) || expires < 0) {
    throw new RangeError('expires must be a Unix time in seconds');
  }
  // Buffer.from(s, 'hex') stops silently at a bad digit: check first
  if (!/^(?:[0-9A-Fa-f]{2}){32,128}$/.test(keyHex)) {
    throw new RangeError('key must be 64 to 256 hex digits');
  }

  const payload = `${id}.${expires}`;
  const sig = crypto.createHmac('sha256', Buffer.from(keyHex, 'hex'))
    .update(payload)
    .digest('base64url');

  return `${payload}.${sig}`;
}

module.exports = { sign };

if (require.main === module) {
  const argv = process.argv.slice(2);
  if (argv.length !== 3 || !/^[0-9]{1,15}$/.test(argv[2])) {
    console.error('usage: node sign.js KEY_HEX ID EXPIRES');
    process.exit(2);
  }
  console.log(sign(argv[1], Number(argv[2]), argv[0]));
}
