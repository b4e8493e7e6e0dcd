# syntax=docker/dockerfile:1
#
# Self-hosted runner image base with goproxy-setup: the job gets GOPROXY
# pointing at a loopback agent that holds the module proxy's client key,
# which the job's own code cannot read (docs/threat-model.md).
#
#   docker build -t runner-go .
#   docker build --build-arg RUNNER_SUDO=remove -t runner-go-strict .
#
# Without a Docker engine, `goproxy-setup image --base REF --tag REF` appends
# the same layer to any base and pushes it (agent/image).

# ---- build: a static binary ------------------------------------------------
# CGO_ENABLED=0: no libc dependency, and privilege.Drop can then set
# no_new_privs on every thread of the agent (a cgo build cannot).
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=devel
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/goproxy-setup/goproxy-setup/internal/version.Version=${VERSION}" \
      -o /out/goproxy-setup ./cmd/goproxy-setup

# ---- final: GitHub's runner image ------------------------------------------
# ghcr.io/actions/actions-runner is the runner image GitHub maintains and
# publishes with every runner release (the one actions-runner-controller
# runs). It is Ubuntu with the runner in /home/runner as user "runner"
# (uid 1001), and has what the entrypoint needs: sh, getent, setpriv
# (util-linux) and useradd. The default is pinned to a runner release (the
# newest tag of actions/runner when it was pinned), never :latest; pin it by
# digest in production (--build-arg
# RUNNER_IMAGE=ghcr.io/actions/actions-runner@sha256:...). `goproxy-setup
# image` records the digest the tag named in the image's
# org.opencontainers.image.base.digest label.
ARG RUNNER_IMAGE=ghcr.io/actions/actions-runner:2.336.0
FROM ${RUNNER_IMAGE}

# RUNNER_SUDO=keep (default) leaves the base's passwordless sudo to the
# runner user: the entrypoint then starts the agent through `sudo -n` as its
# own user, but a job can use the same sudo to read the key, and the summary
# says so. RUNNER_SUDO=remove takes sudo away from the runner user: run the
# container as root (docker run --user 0, or runAsUser: 0) so that the
# entrypoint can separate the agent and then drop to "runner" for the
# runner and every job (docs/threat-model.md).
ARG RUNNER_SUDO=keep

# Root is needed at build time only, for exactly these steps: adding the
# agent user, creating its private directory, and (optionally) removing the
# runner's sudo. The image switches back to the non-root runner below.
USER root
RUN set -eu; \
    useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin --user-group --comment "goproxy-setup agent" goproxy-agent; \
    install -d -m 0700 -o goproxy-agent -g goproxy-agent /var/lib/goproxy-setup; \
    if [ "$RUNNER_SUDO" = remove ]; then \
        gpasswd -d runner sudo || true; \
        rm -f /etc/sudoers.d/runner; \
    fi

COPY --from=build --chmod=0755 /out/goproxy-setup /usr/local/bin/goproxy-setup
COPY --chmod=0755 agent/image/entrypoint.sh /usr/local/bin/goproxy-setup-entrypoint
COPY --chmod=0644 examples/runner-image/policy.hcl /etc/goproxy-setup/policy.hcl

ENV GOPROXY_SETUP_POLICY=/etc/goproxy-setup/policy.hcl \
    GOPROXY_SETUP_STATE_DIR=/tmp/goproxy-setup \
    GOPROXY_SETUP_AGENT_DIR=/var/lib/goproxy-setup \
    GOPROXY_SETUP_AGENT_USER=goproxy-agent \
    GOPROXY_SETUP_EXEC_AS=runner

LABEL org.opencontainers.image.title="goproxy-setup runner" \
      org.opencontainers.image.source="https://github.com/goproxy-setup/goproxy-setup" \
      org.opencontainers.image.description="GitHub Actions runner with the goproxy-setup agent (mTLS Go module proxy access)"

# Non-root by default. The entrypoint enrols (GOPROXY_SETUP_* variables, e.g.
# a step-ca token passed at run time), starts the agent as goproxy-agent
# (through sudo -n, or directly when the container runs as root, then drops
# to runner), and execs the runner.
USER runner
ENTRYPOINT ["/usr/local/bin/goproxy-setup-entrypoint"]
CMD ["/home/runner/run.sh"]
