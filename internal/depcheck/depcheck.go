// Package depcheck owns the tests that keep the import graph pointing one
// way (cmd → agent → agent/* → tlsauth, policies), keep internal/ to leaf
// utilities (test harnesses under internal/testsupport, imported by tests
// only), keep heavy or test-only modules out of the shipped binary,
// keep exits and prints out of the libraries, and keep every third-party
// action and base image pinned (pins_test.go). It has no code of its own.
package depcheck
