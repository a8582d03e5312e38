package api

// Subject kinds: what an event is about. A pipeline and a service of the same name
// never share a stream.
const (
	SubjectService  = "service"
	SubjectPipeline = "pipeline"
)

// Event types: what an event records. Each has its subject kind, whether it is a step
// of a rollout, the step's name and a tone (see EventTypeInfo); no behaviour depends
// on an event's message.
const (
	EventRevision    = "revision"    // a revision was recorded
	EventRollout     = "rollout"     // a rollout started
	EventCreated     = "created"     // a server was created
	EventAdmitted    = "admitted"    // a server passed the health gate and is in rotation
	EventGated       = "gated"       // a blue-green batch passed the health gate
	EventSwitched    = "switched"    // the front door switched to a new batch
	EventDraining    = "draining"    // a server is out of rotation, draining
	EventDestroyed   = "destroyed"   // a server or a service was destroyed
	EventDeployed    = "deployed"    // a rollout succeeded
	EventFailed      = "failed"      // a rollout or rollback failed
	EventRollback    = "rollback"    // a rollback started
	EventRolledBack  = "rolled_back" // a revision was rolled back
	EventInterrupted = "interrupted" // a rollout was interrupted by a stop of kiln
	EventResumed     = "resumed"     // a rollout interrupted by a stop was resumed
	EventHeal        = "heal"        // the controller replaces or creates a server
	EventUnhealthy   = "unhealthy"   // a server failed its health checks in rotation
	EventDrift       = "drift"       // a server differs from its spec
	EventDegraded    = "degraded"    // a service is crash-looping or its revision failed
	EventRecovered   = "recovered"   // a degraded service is healthy again
	EventError       = "error"       // something failed that no other type names
	EventPipeline    = "pipeline"    // a pipeline's run was queued, started, or ended
	EventPaused      = "paused"      // a front door holds requests, or answers for maintenance
	EventUnpaused    = "unpaused"    // a paused front door serves again
	EventCanary      = "canary"      // a canary's step began: its weight and servers
	EventJudged      = "judged"      // a canary's step passed its analysis, with the figures
	EventAborted     = "aborted"     // a canary failed its analysis or was aborted: traffic back to stable
	EventPromoted    = "promoted"    // a canary's step was promoted by hand (kiln promote)
)

// Tones: the colour class of an event.
const (
	ToneOK   = "ok"
	ToneBusy = "busy"
	ToneBad  = "bad"
)

// EventInfo is what kind of event a type is.
type EventInfo struct {
	Subject string // SubjectService or SubjectPipeline
	// Step names the event as a step of a rollout; "" when it is not one.
	Step string
	Tone string // ToneOK, ToneBusy, ToneBad or "" (neutral)
}

var eventTypes = map[string]EventInfo{
	EventRevision:    {SubjectService, "", ""},
	EventRollout:     {SubjectService, "start", ToneBusy},
	EventCreated:     {SubjectService, "surge: server created", ToneBusy},
	EventAdmitted:    {SubjectService, "health gate passed", ToneOK},
	EventGated:       {SubjectService, "health gate passed", ToneOK},
	EventSwitched:    {SubjectService, "front door switched", ToneOK},
	EventDraining:    {SubjectService, "drain", ToneBusy},
	EventDestroyed:   {SubjectService, "destroyed", ""},
	EventDeployed:    {SubjectService, "done", ToneOK},
	EventFailed:      {SubjectService, "failed", ToneBad},
	EventRollback:    {SubjectService, "rollback", ToneBusy},
	EventRolledBack:  {SubjectService, "rolled back", ToneBad},
	EventInterrupted: {SubjectService, "interrupted", ToneBad},
	EventResumed:     {SubjectService, "resumed", ToneBusy},
	EventHeal:        {SubjectService, "", ToneBusy},
	EventUnhealthy:   {SubjectService, "", ToneBad},
	EventDrift:       {SubjectService, "", ToneBad},
	EventDegraded:    {SubjectService, "", ToneBad},
	EventRecovered:   {SubjectService, "", ""},
	EventError:       {SubjectService, "", ToneBad},
	EventPipeline:    {SubjectPipeline, "", ""},
	EventPaused:      {SubjectService, "", ToneBusy},
	EventUnpaused:    {SubjectService, "", ToneOK},
	EventCanary:      {SubjectService, "canary step", ToneBusy},
	EventJudged:      {SubjectService, "analysis passed", ToneOK},
	EventAborted:     {SubjectService, "canary aborted", ToneBad},
	EventPromoted:    {SubjectService, "promoted", ToneOK},
}

// EventTypeInfo returns what kind of event typ is; an unknown type is a service's
// neutral event that is no step.
func EventTypeInfo(typ string) EventInfo {
	if info, ok := eventTypes[typ]; ok {
		return info
	}
	return EventInfo{Subject: SubjectService}
}

// EventTypes lists every event type.
func EventTypes() []string {
	out := make([]string, 0, len(eventTypes))
	for t := range eventTypes {
		out = append(out, t)
	}
	return out
}
