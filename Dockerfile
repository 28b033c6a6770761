# The API image: slim, non-root, no secrets (Vault address and AppRole come from the
# environment at run time; every secret is read from Vault after start-up).
#
# Base image pinned by digest. The digest for python:3.11.10-slim-bookworm is the one
# recorded by a Renovate-maintained digest file (nalabelle/build images/digests.Dockerfile);
# re-resolve it with `docker buildx imagetools inspect` when bumping the tag.
FROM docker.io/library/python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16 AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/moneypath
COPY requirements-runtime.lock pyproject.toml ./
# The runtime subset of the lock (same versions, no dev tools). --require-hashes: every
# wheel must match the lock, so a tampered index cannot slip one in.
RUN /opt/moneypath/bin/pip install --require-hashes --no-deps -r requirements-runtime.lock
COPY app ./app
COPY policies ./policies
RUN /opt/moneypath/bin/pip install --no-deps .

FROM docker.io/library/python:3.11.10-slim-bookworm@sha256:5148c0e4bbb64271bca1d3322360ebf4bfb7564507ae32dd639322e4952a6b16

ENV PATH=/opt/moneypath/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MONEYPATH_ENV=production
RUN groupadd --system --gid 10001 moneypath \
    && useradd --system --uid 10001 --gid moneypath --no-create-home --shell /usr/sbin/nologin moneypath
COPY --from=build /opt/moneypath /opt/moneypath
COPY --from=build --chown=root:root /src/policies /srv/moneypath/policies
WORKDIR /srv/moneypath
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
CMD ["uvicorn", "app.entrypoints.asgi:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
