# mlsentry worker image (used by docker-compose.yml). Dependencies come from the hashed lock files.
# The build stage compiles the Avro accept path (streams/_avrofast.c) into a wheel; the image needs no compiler.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements-build.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements-build.lock
COPY pyproject.toml setup.py README.md ./
COPY detectors ./detectors
COPY streams ./streams
COPY schemas ./schemas
RUN pip wheel --no-deps --no-build-isolation -w /wheels .

FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels
USER 10001
ENTRYPOINT ["mlsentry"]
CMD ["worker"]
