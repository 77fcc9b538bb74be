# The Edgewise agent image, for linux/amd64 and linux/arm64 (a Pi 3, 4 or 5 with a 64-bit OS;
# onnxruntime and numpy publish no 32-bit ARM wheels, so there is no linux/arm/v7 image).
# From the repository's top directory:
#
#   docker buildx build --platform linux/amd64,linux/arm64 -f deploy/compose/agent.Dockerfile \
#     -t registry.example.net/edgewise-agent:0.1.0 --push .
#   docker run -d --name edgewise-agent --restart unless-stopped \
#     -v /etc/edgewise:/etc/edgewise:ro -v edgewise-agent:/var/lib/edgewise-agent \
#     registry.example.net/edgewise-agent:0.1.0
#
# /etc/edgewise holds the device's enrollment bundle (`edgewise devices enroll`); its agent.toml
# sets data_dir = "/var/lib/edgewise-agent" and, for the health check, http_port = 8701.

# The wheel is pure Python: built once, on the machine that builds, whatever the target.
FROM --platform=$BUILDPLATFORM python:3.11.14-slim-bookworm AS wheel
COPY . /src
RUN pip install --no-cache-dir --disable-pip-version-check build==1.6.1 \
    && python -m build --wheel --outdir /dist /src

FROM python:3.11.14-slim-bookworm
ARG TARGETARCH
RUN case "$TARGETARCH" in \
      amd64|arm64) ;; \
      *) echo "the agent image is built for amd64 and arm64, not $TARGETARCH" >&2; exit 1 ;; \
    esac
RUN useradd --system --uid 1001 --user-group --home-dir /var/lib/edgewise-agent \
      --shell /usr/sbin/nologin edgewise-agent \
    && install -d -o edgewise-agent -g edgewise-agent -m 0700 /var/lib/edgewise-agent
COPY --from=wheel /dist /dist
RUN WHEEL="$(ls /dist/edgewise-*.whl)" \
    && pip install --no-cache-dir --disable-pip-version-check "edgewise[agent] @ file://$WHEEL" \
    && rm -rf /dist
USER edgewise-agent
WORKDIR /var/lib/edgewise-agent
VOLUME ["/var/lib/edgewise-agent"]
ENV EDGEWISE_AGENT_HEALTH_URL=http://127.0.0.1:8701/v1/health
# the agent's local API answers /v1/health while its event loop runs (http_port in agent.toml)
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['EDGEWISE_AGENT_HEALTH_URL'], timeout=4)"]
ENTRYPOINT ["edgewise-agent"]
CMD ["--config", "/etc/edgewise/agent.toml"]
