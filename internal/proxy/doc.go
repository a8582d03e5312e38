// Package proxy is the front door of a service: a reverse proxy that balances requests
// over the servers in rotation, swaps that set atomically, drains servers taken out of
// it, and retries a request that failed before reaching a server on another one.
package proxy
