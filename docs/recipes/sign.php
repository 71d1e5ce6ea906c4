<?php
// Mints a signed loyalty cookie value (docs/cookie-signing.md).
//
// Include this file in the shop's login code and call sign(), or run
//     php sign.php KEY_HEX ID EXPIRES
// to print a value.  Needs only PHP's built-in hash and preg functions.

function sign(string $id, int $expires, string $keyHex): string
{
    if (!preg_match('/\A[A-Za-z0-9_-]{1,64}\z/', $id)) {
        throw new InvalidArgumentException('id: 1 to 64 of A-Za-z0-9_-');
    }
    if ($expires < 0) {
        throw new InvalidArgumentException('expires must be a Unix time');
    }
    if (!preg_match('/\A(?:[0-9A-Fa-f]{2}){32,128}\z/', $keyHex)) {
        throw new InvalidArgumentException('key: 64 to 256 hex digits');
    }

    $payload = $id . '.' . $expires;
    $mac = hash_hmac('sha256', $payload, hex2bin($keyHex), true);
    $sig = rtrim(strtr(base64_encode($mac), '+/', '-_'), '=');

    return $payload . '.' . $sig;
}

if (PHP_SAPI === 'cli' && isset($argv[0])
    && realpath($argv[0]) === __FILE__
) {
    if ($argc !== 4 || !preg_match('/\A[0-9]{1,18}\z/', $argv[3])) {
        fwrite(STDERR, "usage: php sign.php KEY_HEX ID EXPIRES\n");
        exit(2);
    }
    echo sign($argv[2], (int) $argv[3], $argv[1]), "\n";
}
