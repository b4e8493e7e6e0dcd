// Package containerci proves the CI front ends where most Go CI jobs really
// run: in a job container. gitlab-ci-local's docker executor runs the GitLab
// template, and nektos/act in container mode runs a `container:` job with
// action.yml, both through the Docker API of rootful podman
// (internal/testsupport/podman), in the two job images (golang:1.26-bookworm's
// shape and golang:1.26-alpine's), as root and as a non-root image user.
// Containers share the host's network namespace (--network host), so jobs
// reach the loopback servers of the test (the mTLS module proxy of
// internal/testsupport/testenv, a releases host) and nothing else.
//
// The package holds only the helpers its tests share; its tests run apart
// from the host-mode ones (internal/testsupport/realci) and in parallel, so
// the container tests' minutes overlap the rest of the suite.
package containerci
