package debian

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

var testDate = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func signedRelease(t *testing.T, e *openpgp.Entity, date time.Time, extra string) []byte {
	return clearsignText(t, e, "Suite: testing\nCodename: testing\nDate: "+date.Format(time.RFC1123)+"\n"+extra+
		"SHA256:\n 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 10 main/binary-amd64/Packages\n")
}

func TestVerifyRelease(t *testing.T) {
	key, err := testKey()
	if err != nil {
		t.Fatal(err)
	}
	keys := openpgp.EntityList{key}
	repo := Repository{URI: "http://x", Suite: "testing"}
	now := testDate.Add(time.Hour)

	good := signedRelease(t, key, testDate, "Valid-Until: "+testDate.Add(48*time.Hour).Format(time.RFC1123)+"\n")
	rel, err := verifyRelease(good, keys, repo, now)
	if err != nil {
		t.Fatalf("a good Release file was refused: %v", err)
	}
	if got := rel.files["main/binary-amd64/Packages"]; got.size != 10 || !strings.HasPrefix(got.sha256, "0123") {
		t.Fatalf("files = %+v", rel.files)
	}

	other, err := newTestKey("someone else")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		now  time.Time
		repo Repository
		want error
		says string
	}{
		{"altered text", []byte(strings.Replace(string(good), "0123456789abcdef 10", "0123456789abcdef 11", 1)), now, repo, ErrBadSignature, "does not verify"},
		{"altered signature", alterSignature(good), now, repo, ErrBadSignature, "does not verify"},
		{"foreign key", signedRelease(t, other, testDate, ""), now, repo, ErrBadSignature, "does not verify"},
		{"not signed", []byte("Suite: testing\n"), now, repo, ErrBadSignature, "not a clearsigned"},
		{"text after the signature", append(append([]byte{}, good...), []byte("\nSHA256:\n evil\n")...), now, repo, ErrBadSignature, "after its signature"},
		{"expired", good, testDate.Add(49 * time.Hour), repo, ErrStale, "expired"},
		{"future-dated", signedRelease(t, key, now.Add(time.Hour), ""), now, repo, ErrStale, "in the future"},
		{"another suite", good, now, Repository{URI: "http://x", Suite: "stable"}, nil, `not of "stable"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verifyRelease(tc.data, keys, tc.repo, tc.now)
			if err == nil {
				t.Fatal("accepted")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("error %v does not wrap %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %q does not say %q", err, tc.says)
			}
		})
	}
}

// alterSignature changes one character of the armored signature's base64 body.
func alterSignature(b []byte) []byte {
	s := string(b)
	i := strings.Index(s, "-----BEGIN PGP SIGNATURE-----")
	j := strings.Index(s[i:], "\n\n") + i + 2 // the body, after the armor headers
	c := s[j+10]
	r := byte('A')
	if c == 'A' {
		r = 'B'
	}
	return []byte(s[:j+10] + string(r) + s[j+11:])
}

func TestRepositoryUnreachable(t *testing.T) {
	c, err := New(Options{Cache: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// A port on loopback that nothing listens on.
	_, err = c.Index(context.Background(), []Repository{{URI: "http://127.0.0.1:1/debian", Suite: "bookworm"}}, "amd64")
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("error %v is not ErrUnreachable", err)
	}
	for _, s := range []string{"http://127.0.0.1:1/debian/dists/bookworm/InRelease", "check this machine's network", "another repository"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}
