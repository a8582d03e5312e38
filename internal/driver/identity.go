package driver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// CanonicalV1 is the version tag that begins the canonical encoding of a server spec:
// the JSON of every field but Env, Files and Revision, fields omitted at their zero
// value, map keys sorted.
const CanonicalV1 = "kiln.server-spec.v1\n"

// IdentityLen is the length of a server's short identity.
const IdentityLen = 32

// Canonical is the versioned canonical encoding of the spec: CanonicalV1, then the
// spec's canonical JSON. It holds no env or file value, only their digests, and not
// the revision, which is not part of a server's identity.
//
// Every field added to ServerSpec must be omitempty (omitzero for a struct), with its
// zero value meaning what servers did before it existed: then it is absent from the
// encoding of every spec that does not set it, and an upgrade of kiln changes no
// existing server's identity. TestIdentityIgnoresZeroFields holds that true.
func (s ServerSpec) Canonical() []byte {
	return append([]byte(CanonicalV1), s.canonicalJSON()...)
}

func (s ServerSpec) canonicalJSON() []byte {
	s.Revision = 0
	return canonicalJSON(s)
}

// canonicalJSON is v marshalled as JSON: struct fields in declaration order, maps with
// sorted keys. It is apart so that a test can encode a ServerSpec with a field added.
func canonicalJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("driver: a server spec must marshal: " + err.Error())
	}
	return b
}

// Hash is the server's identity: the hex SHA-256 of the spec's canonical JSON, the v1
// encoding without its tag (what kiln has always recorded on servers, so a server of
// an older kiln keeps its identity). Two servers of the same hash are interchangeable.
// A later encoding version will hash its tag too, so that no spec of it can have the
// identity of a v1 spec.
func (s ServerSpec) Hash() string { return hashOf(s.canonicalJSON()) }

func hashOf(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:])
}

// Identity is the spec's short identity: the first IdentityLen characters of Hash,
// lowercase hex. It fits a Kubernetes label value and a DNS label, and it is derived
// from Hash alone, so that the identity of a server already running is read from the
// hash recorded on it (IdentityOf), never recomputed from a spec an older kiln wrote.
func (s ServerSpec) Identity() string { return IdentityOf(s.Hash()) }

// IdentityOf is the short identity of the spec whose Hash is hash, as recorded on a
// server (Server.SpecHash); "" if hash is not one.
func IdentityOf(hash string) string {
	if len(hash) < IdentityLen {
		return ""
	}
	for _, c := range hash[:IdentityLen] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return ""
		}
	}
	return hash[:IdentityLen]
}

// Identity is the short identity of the spec the server was created from, read from
// its recorded hash: a server matches a spec when s.Identity() == spec.Identity(), or
// better s.SpecHash == spec.Hash().
func (s Server) Identity() string { return IdentityOf(s.SpecHash) }
