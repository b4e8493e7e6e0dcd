// Package podsidecar holds the tests of the pod sidecar shape (issue 18):
// the Kubernetes manifests in examples/kubernetes run as written under
// `podman kube play`, with the few changes a podman pod on one machine
// needs (overlay in the test), against the mTLS upstream of testenv. It
// has no code of its own.
package podsidecar
