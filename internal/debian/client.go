package debian

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// ErrHashMismatch is wrapped by the error of a file (an index or a .deb, downloaded or
// in the cache) whose size or SHA-256 is not the one the signed Release file, or the
// lock, names for it.
var ErrHashMismatch = errors.New("hash mismatch")

// ErrUnreachable is wrapped by the error of a repository that could not be reached.
var ErrUnreachable = errors.New("repository unreachable")

// Options configure a Client.
type Options struct {
	// Cache is the directory downloaded files are kept in, each under its SHA-256
	// (Cache/sha256/HEX): .debs, and the Packages indexes of the suites read. Required.
	Cache string
	// HTTP is the client requests go through; a client with a 10-minute timeout when nil.
	HTTP *http.Client
	// Now is the clock Release files are checked against (Valid-Until, Date);
	// time.Now when nil.
	Now func() time.Time
	// Parallel is how many .debs are downloaded at once; 4 when 0.
	Parallel int
}

// Client reads Debian repositories and keeps what it downloads in a cache. Its
// methods may be called from several goroutines.
type Client struct {
	opts Options
}

// New returns a Client; it touches nothing until used.
func New(opts Options) (*Client, error) {
	if opts.Cache == "" {
		return nil, errors.New("debian: Options.Cache is required")
	}
	if opts.HTTP == nil {
		opts.HTTP = &http.Client{Timeout: 10 * time.Minute}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Parallel <= 0 {
		opts.Parallel = 4
	}
	return &Client{opts: opts}, nil
}

func (c *Client) now() time.Time { return c.opts.Now() }

// get reads a small file (a Release file) whole.
func (c *Client) get(ctx context.Context, url string, limit int64) ([]byte, error) {
	resp, err := c.open(ctx, url)
	if err != nil {
		return nil, err
	}
	defer resp.Close()
	b, err := io.ReadAll(io.LimitReader(resp, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than the %d bytes allowed", url, limit)
	}
	return b, nil
}

// open starts a GET of url; a body that is not 200 OK is an error that names url.
func (c *Client) open(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.opts.HTTP.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: fetching %s: %v: check this machine's network and proxy, or name another repository (a mirror) in the spec", ErrUnreachable, url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("fetching %s: 404 Not Found: the repository has no such file (is the suite, component or architecture right?)", url)
		}
		return nil, fmt.Errorf("fetching %s: %s", url, resp.Status)
	}
	return resp.Body, nil
}

// blobPath is where the cache keeps the file of SHA-256 sum.
func (c *Client) blobPath(sum string) string {
	return filepath.Join(c.opts.Cache, "sha256", sum)
}

// cached returns the path of the cached file of sum, after checking that it has that
// size (when size >= 0) and SHA-256; ok is false when the cache has no such file. A
// file that does not match is an error wrapping ErrHashMismatch: it is left in place
// for inspection, and the error says to remove it.
func (c *Client) cached(sum string, size int64) (path string, ok bool, err error) {
	p := c.blobPath(sum)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", false, fmt.Errorf("reading the cached %s: %w", p, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != sum || (size >= 0 && n != size) {
		return "", false, fmt.Errorf("%w: the cached file %s has %d bytes of SHA-256 %s, not %d bytes of %s: it was altered or corrupted; remove it to download it again", ErrHashMismatch, p, n, got, size, sum)
	}
	return p, true, nil
}

// store copies r into the cache as the file of sum, refusing (ErrHashMismatch, naming
// what) content of another size (when size >= 0) or SHA-256; nothing is kept then.
func (c *Client) store(r io.Reader, sum string, size int64, what string) (string, error) {
	dir := filepath.Join(c.opts.Cache, "sha256")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name()) // no-op once renamed
	h := sha256.New()
	limit := int64(1 << 40)
	if size >= 0 {
		limit = size + 1 // one byte more tells a longer file
	}
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, limit))
	if err != nil {
		f.Close()
		return "", fmt.Errorf("reading %s: %w", what, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != sum || (size >= 0 && n != size) {
		f.Close()
		return "", fmt.Errorf("%w: %s has %d bytes of SHA-256 %s, not the %d bytes of %s expected: it was altered on the way or at the source; it is refused", ErrHashMismatch, what, n, got, size, sum)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	p := c.blobPath(sum)
	return p, os.Rename(f.Name(), p)
}

// fetch returns the cached file of sum, downloading it from url first when the cache
// has none.
func (c *Client) fetch(ctx context.Context, url, sum string, size int64) (string, error) {
	if p, ok, err := c.cached(sum, size); ok || err != nil {
		return p, err
	}
	body, err := c.open(ctx, url)
	if err != nil {
		return "", err
	}
	defer body.Close()
	return c.store(body, sum, size, url)
}
