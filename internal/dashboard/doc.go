// Package dashboard is kiln's web dashboard, served by `kiln serve` on the API's
// listener: the fleet, each service (servers, rollout steps, history, drift, logs),
// events, pipeline runs and images. Pages are html/template with embedded assets and
// work without JavaScript; a small script swaps in fresh content when the event stream
// says something changed. Signing in sets an HttpOnly, Secure, SameSite=Strict cookie;
// every change is a POST confirmed on its own page and carrying a CSRF token, and a
// read-only token's session can change nothing.
package dashboard
