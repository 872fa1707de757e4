"""Ed25519 verification and SHA-512: RFC 8032 section 7.1 and FIPS 180-4 vectors, and what must fail."""

from portable import raises

import ed25519
from sha512 import sha512

# RFC 8032, 7.1: (public key, message, signature), hex. TEST SHA(abc) signs the SHA-512 of "abc".
_ABC512 = ("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
           "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
RFC8032 = (
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
     "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
     "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf", _ABC512,
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b589"
     "09351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
)


def _b(h):
    return bytes.fromhex(h)


def test_sha512_fips_vectors_pure():
    assert sha512(b"abc", pure=True).hexdigest() == _ABC512
    assert sha512(b"", pure=True).hexdigest() == (
        "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
        "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e")
    two_blocks = (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                  b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
    assert sha512(two_blocks, pure=True).hexdigest() == (
        "8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
        "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909")


def test_sha512_incremental_equals_one_shot():
    data = bytes(range(256)) * 3
    h = sha512(pure=True)
    for i in range(0, len(data), 37):
        h.update(data[i:i + 37])
    assert h.digest() == sha512(data, pure=True).digest()


def test_rfc8032_vectors_verify():
    for pk, msg, sig in RFC8032:
        ed25519.verify(_b(pk), _b(msg), _b(sig))
        assert ed25519.is_valid(_b(pk), _b(msg), _b(sig))


def test_any_flipped_bit_fails():
    pk, msg, sig = (_b(x) for x in RFC8032[2])
    for i in (0, 31, 32, 63):
        bad = bytearray(sig)
        bad[i] ^= 0x01
        assert not ed25519.is_valid(pk, msg, bytes(bad))
    assert not ed25519.is_valid(pk, b"\xaf\x83", sig)
    badpk = bytearray(pk)
    badpk[5] ^= 0x40
    assert not ed25519.is_valid(bytes(badpk), msg, sig)
    # the key of another vector, and an empty message, do not verify either
    assert not ed25519.is_valid(_b(RFC8032[1][0]), msg, sig)
    assert not ed25519.is_valid(pk, b"", sig)


def test_malformed_inputs_are_refused_not_crashed():
    pk, msg, sig = (_b(x) for x in RFC8032[0])
    assert "length" in str(raises(ed25519.BadSignature, ed25519.verify, pk[:31], msg, sig))
    assert "length" in str(raises(ed25519.BadSignature, ed25519.verify, pk, msg, sig + b"\x00"))
    # S >= L (the group order) is refused: S + L would otherwise verify too (malleability)
    s = int.from_bytes(sig[32:], "little") + 2 ** 252 + 27742317777372353535851937790883648493
    e = raises(ed25519.BadSignature, ed25519.verify, pk, msg, sig[:32] + s.to_bytes(32, "little"))
    assert "range" in str(e)
    # y = 2 is not on the curve; y >= p is not canonical
    assert "point" in str(raises(ed25519.BadSignature, ed25519.verify, b"\x02" + b"\x00" * 31, msg, sig))
    assert not ed25519.is_valid(b"\xff" * 31 + b"\x7f", msg, sig)
    assert not ed25519.is_valid(pk, msg, b"\x00" * 64)
