# mlsentry worker image (used by docker-compose.yml). Dependencies come from the hashed lock file.
FROM python:3.11-slim
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
COPY detectors ./detectors
COPY streams ./streams
COPY schemas ./schemas
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
USER 10001
ENTRYPOINT ["mlsentry"]
CMD ["worker"]
