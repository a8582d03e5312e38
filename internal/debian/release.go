package debian

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"pault.ag/go/debian/control"
)

// ErrBadSignature is wrapped by the error of an InRelease whose signature does not
// verify with the repository's keyring (a tampered or foreign Release file).
var ErrBadSignature = errors.New("bad signature")

// ErrStale is wrapped by the error of an InRelease past its Valid-Until, or dated in
// the future: a mirror replaying old metadata, or a wrong clock.
var ErrStale = errors.New("stale or future-dated Release file")

// maxClockSkew is how far in the future a Release file's Date may be before it is
// refused: clocks differ a little.
const maxClockSkew = 10 * time.Minute

// maxReleaseBytes bounds an InRelease (bookworm's is about 150 KB).
const maxReleaseBytes = 16 << 20

// release is a verified InRelease: its fields and the files it vouches for.
type release struct {
	repo       Repository
	date       time.Time
	validUntil time.Time // zero when the archive sets none (Debian's main suites)
	signer     string    // the signing key's identity, for messages
	files      map[string]fileSum
}

// fileSum is the size and SHA-256 a Release file lists for one index file.
type fileSum struct {
	size   int64
	sha256 string
}

func (r Repository) distURL(name string) string {
	return strings.TrimSuffix(r.URI, "/") + "/dists/" + r.Suite + "/" + name
}

// fetchRelease downloads dists/SUITE/InRelease and verifies it (see verifyRelease).
func (c *Client) fetchRelease(ctx context.Context, r Repository) (*release, error) {
	u := r.distURL("InRelease")
	body, err := c.get(ctx, u, maxReleaseBytes)
	if err != nil {
		return nil, err
	}
	keys, err := readKeyring(r.keyring())
	if err != nil {
		return nil, err
	}
	rel, err := verifyRelease(body, keys, r, c.now())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	return rel, nil
}

// readKeyring reads an OpenPGP keyring file, binary (as debian-archive-keyring ships
// them) or armored.
func readKeyring(path string) (openpgp.EntityList, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the repository's keyring: %w (install debian-archive-keyring, or name a keyring that exists)", err)
	}
	var keys openpgp.EntityList
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN PGP")) {
		keys, err = openpgp.ReadArmoredKeyRing(bytes.NewReader(b))
	} else {
		keys, err = openpgp.ReadKeyRing(bytes.NewReader(b))
	}
	if err != nil {
		return nil, fmt.Errorf("reading the keyring %s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("the keyring %s holds no key", path)
	}
	return keys, nil
}

// verifyRelease checks that data is one clearsigned document and nothing else, signed
// by a key of keys; that it is the Release file of r.Suite (its Suite or Codename),
// dated no later than now (give or take maxClockSkew) and valid at now; and returns
// what it says. Only the signed text is read.
func verifyRelease(data []byte, keys openpgp.EntityList, r Repository, now time.Time) (*release, error) {
	if !bytes.HasPrefix(data, []byte("-----BEGIN PGP SIGNED MESSAGE-----")) {
		return nil, fmt.Errorf("%w: it is not a clearsigned document", ErrBadSignature)
	}
	block, rest := clearsign.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%w: it is not a well-formed clearsigned document", ErrBadSignature)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("%w: it has %d bytes after its signature", ErrBadSignature, len(rest))
	}
	signer, err := block.VerifySignature(keys, &packet.Config{Time: func() time.Time { return now }})
	if err != nil {
		return nil, fmt.Errorf("%w: the signature does not verify with the keyring %s (%v): the file was altered, or signed by a key that keyring does not hold", ErrBadSignature, r.keyring(), err)
	}
	pr, err := control.NewParagraphReader(bytes.NewReader(block.Plaintext), nil)
	if err != nil {
		return nil, err
	}
	p, err := pr.Next()
	if err != nil {
		return nil, fmt.Errorf("reading the Release fields: %w", err)
	}
	v := p.Values
	if v["Suite"] != r.Suite && v["Codename"] != r.Suite {
		return nil, fmt.Errorf("it is the Release file of %q (codename %q), not of %q: the repository serves another suite at that path", v["Suite"], v["Codename"], r.Suite)
	}
	rel := &release{repo: r, files: map[string]fileSum{}}
	if id := signer.PrimaryIdentity(); id != nil {
		rel.signer = id.Name
	}
	if rel.date, err = parseReleaseTime(v["Date"]); err != nil {
		return nil, fmt.Errorf("its Date: %w", err)
	}
	if rel.date.After(now.Add(maxClockSkew)) {
		return nil, fmt.Errorf("%w: it is dated %s, in the future: check this machine's clock", ErrStale, rel.date.Format(time.RFC1123))
	}
	if s := v["Valid-Until"]; s != "" {
		if rel.validUntil, err = parseReleaseTime(s); err != nil {
			return nil, fmt.Errorf("its Valid-Until: %w", err)
		}
		if now.After(rel.validUntil) {
			return nil, fmt.Errorf("%w: it expired on %s (Valid-Until): the repository or a mirror serves stale metadata; try again later, or another mirror", ErrStale, rel.validUntil.Format(time.RFC1123))
		}
	}
	for _, line := range strings.Split(v["SHA256"], "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || len(f[0]) != 64 {
			return nil, fmt.Errorf("its SHA256 line %q is malformed", line)
		}
		rel.files[f[2]] = fileSum{size: n, sha256: strings.ToLower(f[0])}
	}
	if len(rel.files) == 0 {
		return nil, errors.New("it lists no SHA256 sums: kiln verifies every index by its SHA-256")
	}
	return rel, nil
}

// parseReleaseTime reads a Release file's date: RFC 2822, in UTC as the archive writes.
func parseReleaseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC1123, time.RFC1123Z, "Mon, _2 Jan 2006 15:04:05 MST", "Mon, 2 Jan 2006 15:04:05 -0700"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date of the form %q", s, time.RFC1123)
}
