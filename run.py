"""Entry point: `gunicorn run:app`, `flask --app run ...`, or `python run.py` for a local portal."""
from app import create_app

app = create_app()

if __name__ == "__main__":
    from app.quickstart import serve
    serve(app)
