# tailsrv in a container: streams one mounted file to TCP clients on port 4321.
#
#   docker build -t tailsrv .
#   docker run --rm -p 4321:4321 -v /var/log/nginx:/data:ro tailsrv -p 4321 /data/access.log
#
# The arguments after the image name are tailsrv's (ENTRYPOINT); without any it
# prints its help. See docs/operations.md, "Docker".
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md requirements.txt requirements-test.txt ./
COPY tailsrv/ ./tailsrv/
RUN pip install --no-cache-dir . \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tailsrv

# Numeric, so that the runtime can tell it is not root without reading /etc/passwd.
USER 10001
WORKDIR /data
EXPOSE 4321
ENTRYPOINT ["tailsrv"]
CMD ["--help"]
