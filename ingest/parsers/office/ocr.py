"""Images (PNG, JPEG, TIFF) and scanned PDF pages read by OCR: RapidOCR (PP-OCRv4 detection and recognition, ONNX models
shipped inside the `rapidocr-onnxruntime` wheel; nothing is downloaded), in the sandboxed worker.

* Each image, each frame of a multi-page TIFF, and each page of a PDF without a text layer is a
  page (1-based); a PDF page is read from its largest embedded image (a scanner's page image). Its recognised lines, in the
  engine's reading order, are read as plain text (paragraphs at blank lines, CJK wrapping joined).
* Bounded: Pillow refuses an image over `max_image_pixels` before decoding it (`image_too_large`);
  a TIFF over `max_ocr_pages` frames is `ocr_too_many_pages`; OCR stops at `max_ocr_seconds` of
  wall-clock time per document (`ocr_time_limit`); the worker's CPU and memory limits still hold.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from ingest.parsers.office.common import Out, Refused

#: Longest side an image is scaled down to before OCR: text at 300 dpi on A4 stays legible, and the
#: detector's work (quadratic in the side) stays bounded.
MAX_SIDE = 3000


class _Engine:
    """RapidOCR, loaded on first use (a PDF of blank pages never loads it)."""

    def __init__(self) -> None:
        self._ocr = None

    def __call__(self, array):
        if self._ocr is None:
            from rapidocr_onnxruntime import RapidOCR

            self._ocr = RapidOCR()
        return self._ocr(array)


def page_lines(engine, image) -> tuple[list[str], float]:
    """The recognised lines of one page and their mean confidence (0 when nothing was found)."""
    import numpy as np

    image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        scale = MAX_SIDE / max(image.size)
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    result, _ = engine(np.asarray(image))
    lines = [(str(r[1]), float(r[2])) for r in result or [] if str(r[1]).strip()]
    if not lines:
        return [], 0.0
    return [t for t, _ in lines], sum(c for _, c in lines) / len(lines)


@contextmanager
def _image_errors(what: str) -> Iterator[None]:
    """A decompression bomb is `image_too_large`, any other decoding error `document_malformed`."""
    from PIL import Image

    try:
        yield
    except Image.DecompressionBombError as exc:
        raise Refused("image_too_large", str(exc)[:200]) from None
    except (MemoryError, Refused):
        raise
    except Exception as exc:
        raise Refused("document_malformed", f"{what}: {type(exc).__name__}: {exc}") from None


def extract_image(path: str, out: Out) -> None:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = out.limits.max_image_pixels
    with _image_errors("image"):
        image = Image.open(path)
        frames = getattr(image, "n_frames", 1)
    if frames > out.limits.max_ocr_pages:
        raise Refused("ocr_too_many_pages", f"{frames:,} pages; at most {out.limits.max_ocr_pages:,}")
    if image.width * image.height > out.limits.max_image_pixels:
        raise Refused("image_too_large", f"{image.width:,} x {image.height:,} pixels")
    def frame(number: int):
        image.seek(number - 1)
        image.load()
        return image

    _read_pages(out, frames, frame)


def _read_pages(out: Out, pages: int, page_image) -> None:
    """OCR `pages` pages, `page_image(number)` giving each one's image (or None: a page without one)."""
    from ingest.parsers.text import parse_text

    engine = _Engine()
    deadline = time.monotonic() + out.limits.max_ocr_seconds
    confidences = []
    for number in range(1, pages + 1):
        if time.monotonic() > deadline:
            raise Refused("ocr_time_limit", f"{out.limits.max_ocr_seconds} s reached at page {number}")
        with _image_errors(f"page {number}"):
            image = page_image(number)
        lines, confidence = page_lines(engine, image) if image is not None else ([], 0.0)
        confidences.append(confidence)
        out.add_parsed(parse_text("\n".join(lines)), page=number)
    out.ocr_confidence = [round(c, 3) for c in confidences]
    out.page_count = pages


def extract_scanned_pdf(path: str, out: Out) -> None:
    """A PDF whose pages have no text layer: each page's largest image, read by OCR."""
    from pypdf import PdfReader

    with _image_errors("PDF"):
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            reader.decrypt("")
        pages = len(reader.pages)
    if pages > out.limits.max_ocr_pages:
        raise Refused("ocr_too_many_pages", f"{pages:,} pages; at most {out.limits.max_ocr_pages:,}")

    def largest(number: int):
        best = None
        for img in reader.pages[number - 1].images:
            pil = img.image
            if pil is None or pil.width * pil.height > out.limits.max_image_pixels:
                continue
            if best is None or pil.width * pil.height > best.width * best.height:
                best = pil
        return best

    _read_pages(out, pages, largest)
