// Package spec is kiln's spec language: HCL2 files (native syntax or JSON) declaring
// variables and images, decoded into plain Go values with every problem reported as an
// hcl.Diagnostic carrying a file:line:column range. It imports no other kiln package.
package spec
