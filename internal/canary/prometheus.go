package canary

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// ErrNoSample is the error of a query whose result is an empty vector: the metric is
// not scraped yet, or no series matches.
var ErrNoSample = errors.New("no sample")

// maxResponse bounds what Query reads from a server: the answer is one number, and
// the server is the user's to name, not ours to trust.
const maxResponse = 4 << 20

// Prometheus asks a Prometheus server instant queries.
type Prometheus struct {
	URL    string       // base URL, such as http://127.0.0.1:9090
	Client *http.Client // nil: a default with a 10 s timeout
}

// Query evaluates query at the server's now and returns its one number: a scalar, or
// a vector of exactly one sample. Anything else (an empty vector, which wraps
// ErrNoSample, several samples, NaN, a matrix or string, an HTTP or API error) is an
// error naming the query and the server. Warnings of the API are ignored.
func (p Prometheus) Query(ctx context.Context, query string) (float64, error) {
	// Errors name the server without the password its URL may carry: they get logged.
	u, err := url.Parse(p.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return 0, errors.New("prometheus: the URL is not an http(s) URL, such as http://127.0.0.1:9090")
	}
	server := u.Redacted()
	fail := func(format string, a ...any) (float64, error) {
		return 0, fmt.Errorf("prometheus %s: query %q "+format, append([]any{server, query}, a...)...)
	}
	c, err := api.NewClient(api.Config{Address: p.URL, Client: p.httpClient()})
	if err != nil {
		return 0, fmt.Errorf("prometheus %s: %w", server, err)
	}
	v, _, _, err := v1.NewAPI(c).Query(ctx, query, time.Time{})
	if err != nil {
		var apiErr *v1.Error
		if errors.As(err, &apiErr) && apiErr.Detail != "" {
			return fail("failed: %w: %s", err, clip(apiErr.Detail))
		}
		return fail("failed: %w", err)
	}
	var s model.SampleValue
	switch v := v.(type) {
	case *model.Scalar:
		s = v.Value
	case model.Vector:
		switch len(v) {
		case 0:
			return fail("returned %w: is the metric scraped yet?", ErrNoSample)
		case 1:
		default:
			return fail("returned %d samples, not one: aggregate them (sum, max, ...)", len(v))
		}
		if v[0] == nil {
			return fail("returned no result")
		}
		if v[0].Histogram != nil {
			return fail("returned a histogram, not a number")
		}
		s = v[0].Value
	case nil:
		return fail("returned no result")
	default:
		return fail("returned a %s, not a scalar or a vector of one sample", v.Type())
	}
	if math.IsNaN(float64(s)) {
		return fail("returned NaN")
	}
	return float64(s), nil
}

// httpClient is p.Client, or the default, with its responses bounded to maxResponse
// and its redirects kept to the server's host.
func (p Prometheus) httpClient() *http.Client {
	c := &http.Client{Timeout: 10 * time.Second}
	if p.Client != nil {
		cp := *p.Client
		c = &cp
	}
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c.Transport = limitTransport{base}
	if c.CheckRedirect == nil {
		c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if req.URL.Host != via[0].URL.Host {
				return fmt.Errorf("redirected to another host, %s", req.URL.Host)
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		}
	}
	return c
}

// Expand replaces $CANARY_REVISION and $STABLE_REVISION in query with the revisions'
// numbers.
func Expand(query string, canary, stable int64) string {
	return strings.NewReplacer(
		"$CANARY_REVISION", strconv.FormatInt(canary, 10),
		"$STABLE_REVISION", strconv.FormatInt(stable, 10),
	).Replace(query)
}

// limitTransport fails the reading of a response body past maxResponse bytes.
type limitTransport struct{ base http.RoundTripper }

func (t limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err == nil {
		resp.Body = &limitedBody{ReadCloser: resp.Body, left: maxResponse}
	}
	return resp, err
}

type limitedBody struct {
	io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Whether the body ends here tells a whole answer from a cut one.
		var one [1]byte
		if n, err := b.ReadCloser.Read(one[:]); n == 0 {
			return 0, err
		}
		return 0, fmt.Errorf("response larger than %d MiB", maxResponse>>20)
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

// clip shortens an error body of the server's for a message.
func clip(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
