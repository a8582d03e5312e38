// Package rollout moves a service to a new revision by replacing its servers, rolling
// or blue-green, admitting a new server to the front door only once it is healthy and
// destroying an old one only once the front door has drained it.
package rollout
