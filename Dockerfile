# tailsrv in a container: streams a mounted file to TCP clients on port 4321.
#
#   docker build -t tailsrv .        (or: podman build --format docker -t tailsrv .)
#   docker run --rm -p 4321:4321 -v /var/log/app:/data:ro tailsrv -p 4321 --follow-name /data/app.log
#
# The arguments after the image name are tailsrv's (ENTRYPOINT); without any it
# prints its help. See docs/operations.md, "Containers".

# The build stage installs into a virtual environment, which alone is copied
# into the final image: no pip, pip cache or build files are left there, nor the
# dependencies' own test suites and C sources (5.7 MB), which nothing imports.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY . .
RUN python -m venv /opt/tailsrv \
 && /opt/tailsrv/bin/pip install . \
 && /opt/tailsrv/bin/pip uninstall --yes pip setuptools \
 && find /opt/tailsrv -depth \( -name tests -o -name '*.c' -o -name '*.h' -o -name '*.pxd' \
         -o -name '*.pyx' \) -exec rm -rf {} +

FROM python:3.11-slim
LABEL org.opencontainers.image.title="tailsrv" \
      org.opencontainers.image.description="tail -f as a server: streams a growing file to many TCP clients" \
      org.opencontainers.image.licenses="Unlicense" \
      org.opencontainers.image.documentation="docs/operations.md"
ENV PATH=/opt/tailsrv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/tailsrv /opt/tailsrv
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tailsrv \
 && mkdir /data

# Numeric, so that the runtime can tell it is not root without reading /etc/passwd.
USER 10001
WORKDIR /data
EXPOSE 4321
# tailsrv ends cleanly (status 0, clients closed) on SIGTERM, the runtime's default.
STOPSIGNAL SIGTERM
# Fails when the server stops answering on its ports (tailsrv/ops/health.py).
HEALTHCHECK --interval=30s --timeout=10s --start-period=5s --retries=3 \
    CMD ["python", "-m", "tailsrv.ops.health"]
ENTRYPOINT ["tailsrv"]
CMD ["--help"]
