// Package store keeps kiln's desired state and history in one SQLite file: services,
// their numbered revisions, rollouts and their outcomes, and events. Observed state is
// never stored here: it is always read from the runtime.
package store
