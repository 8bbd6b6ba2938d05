# One image for web, worker and beat (one process per container; the command differs).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 KOALA_DATA_DIR=/data
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN DEBUG=0 python manage.py collectstatic --noinput -v0
RUN useradd --system --uid 1000 koala && mkdir -p /data && chown koala /data
USER koala
EXPOSE 8000
CMD ["gunicorn", "monitor.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
