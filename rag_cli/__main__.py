from rag_cli import app

app()
