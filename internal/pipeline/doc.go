// Package pipeline runs kiln's pipelines: for each new commit of a pipeline's source, a
// run that bakes it, tests candidate servers of its images, deploys and promotes it
// through the engine, and records every stage.
package pipeline
