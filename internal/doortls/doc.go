// Package doortls is the TLS of the door: a Manager picks each handshake's
// certificate by server name, from a site's certificate files (reloaded when they
// change) or from an ACME CA through x/crypto's autocert, and the helpers around it
// redirect plain HTTP to HTTPS, set HSTS, and split one listener into its TLS and
// plain connections.
package doortls
