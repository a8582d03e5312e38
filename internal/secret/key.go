package secret

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/kiln-build/kiln/internal/atomicfile"
)

// KeyFile is the key's file in the state directory, beside (never inside) kiln.db.
const KeyFile = "secret.key"

// ErrSealed means a sealed value cannot be opened with this key: it was sealed with
// another key (the key file was replaced) or altered.
var ErrSealed = errors.New("a sealed secret cannot be opened with this state directory's key")

// Key seals secret values and digests them. Its two parts are derived from one
// random 32-byte key, so that neither reveals the other.
type Key struct {
	aead   cipher.AEAD
	digest []byte
}

// LoadKey reads the key at path, creating it (32 random bytes, mode 0600) the first
// time.
func LoadKey(path string) (*Key, error) {
	raw, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		raw = make([]byte, 32)
		if _, err := rand.Read(raw); err != nil {
			return nil, err
		}
		if err := atomicfile.Write(path, []byte(hex.EncodeToString(raw)+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("writing the secrets key: %w", err)
		}
		return NewKey(raw)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the secrets key: %w", err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("the secrets key %s is not 64 hex digits: restore it from a backup, or remove it to make a new one (the secrets sealed with the old one are then lost)", path)
	}
	return NewKey(b)
}

// NewKey is the key derived from 32 random bytes.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != 32 {
		return nil, errors.New("a secrets key is 32 bytes")
	}
	block, err := aes.NewCipher(derive(raw, "seal"))
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Key{aead: aead, digest: derive(raw, "digest")}, nil
}

func derive(raw []byte, purpose string) []byte {
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("kiln secret key: " + purpose))
	return m.Sum(nil)
}

const sealedPrefix = "sealed:v1:"

// Seal encrypts value (AES-256-GCM, a random nonce): sealing one value twice gives two
// different strings. Compare values by Digest.
func (k *Key) Seal(value []byte) string {
	nonce := make([]byte, k.aead.NonceSize())
	rand.Read(nonce)
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(k.aead.Seal(nonce, nonce, value, nil))
}

// Open decrypts what Seal returned; ErrSealed if it cannot.
func (k *Key) Open(sealed string) ([]byte, error) {
	b64, ok := strings.CutPrefix(sealed, sealedPrefix)
	if !ok {
		return nil, ErrSealed
	}
	b, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil || len(b) < k.aead.NonceSize() {
		return nil, ErrSealed
	}
	n := k.aead.NonceSize()
	out, err := k.aead.Open(nil, b[:n], b[n:], nil)
	if err != nil {
		return nil, ErrSealed
	}
	return out, nil
}

// Digest names value without revealing it: HMAC-SHA256 under the key, so that a short
// password cannot be found by hashing guesses. Equal values have equal digests.
func (k *Key) Digest(value []byte) string {
	return DigestWith(k.digest, value)
}

// DigestKey is the part of the key that Digest uses, for a driver that must check a
// server's values against their recorded digests.
func (k *Key) DigestKey() []byte { return k.digest }

// DigestWith is Digest under a digest key.
func DigestWith(key, value []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(value)
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}
