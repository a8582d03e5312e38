// Package httpguard bounds what one client can hold of kiln's HTTP servers (the API and
// every front door): slow or oversized request bodies, and panics in handlers.
package httpguard
