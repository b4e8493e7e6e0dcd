// Package testenv owns the hermetic test environment: throwaway CAs and
// leaf certificates, generated Go modules served as a GOPROXY (file layout
// or plain HTTP on loopback), the real third-party servers built from
// .ci/tools (goproxy, step-ca, toxiproxy, actionlint), an mTLS module proxy
// stack (nginx from examples/nginx-mtls in front of the real goproxy) and a
// clean environment for running the real go command.
//
// It is imported only by tests: every helper takes a testing.TB, fails the
// test with t.Fatal on setup errors (never t.Skip: a missing tool or nginx
// is a broken test environment, not a reason to pass), and registers its
// own cleanup. Everything listens on loopback only.
package testenv
