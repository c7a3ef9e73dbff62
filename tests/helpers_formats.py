"""Office, EPUB and e-mail files built in the tests with the libraries that write them (no committed
binaries): python-docx, openpyxl, python-pptx, ebooklib and the standard library's `email`."""

from __future__ import annotations

import io
import re
import zipfile

ZH_HANS = "防火墙只开放必要的端口，其余端口一律关闭。"
ZH_HANT = "伺服器的設定檔存放在系統目錄中，修改前請先備份。"
EN = "Pinning lets a machine follow the stable release for most packages."
PORTS = [("端口", "服务", "说明"), ("22", "ssh", "远程登录"), ("443", "https", "加密网页"), ("5432", "postgres", "資料庫")]


def docx_bytes(*, footnote: str | None = "脚注：数据来自二〇二四年的测量。", table: bool = True) -> bytes:
    import docx

    d = docx.Document()
    d.core_properties.title = "服务器手册"
    d.sections[0].header.paragraphs[0].text = "页眉：内部资料"
    d.sections[0].footer.paragraphs[0].text = "页脚：第 1 页"
    d.add_heading("第一章 网络", level=1)
    d.add_paragraph(ZH_HANS)
    d.add_heading("1.1 端口", level=2)
    d.add_paragraph("只允许 SSH 登录", style="List Bullet")
    d.add_paragraph("禁止 Telnet", style="List Number")
    if table:
        t = d.add_table(rows=len(PORTS), cols=3)
        for r, row in enumerate(PORTS):
            for c, value in enumerate(row):
                t.cell(r, c).text = value
    d.add_heading("第二章 伺服器", level=1)
    d.add_paragraph(ZH_HANT)
    d.add_heading("Chapter 3 Packages", level=1)
    d.add_paragraph(EN)
    if footnote:
        _add_footnote(d, footnote)
    bio = io.BytesIO()
    d.save(bio)
    return bio.getvalue()


def _add_footnote(d, text: str) -> None:
    from docx.opc.constants import RELATIONSHIP_TYPE as RT
    from docx.opc.packuri import PackURI
    from docx.opc.part import Part

    w = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    xml = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:footnotes xmlns:w="{w}">'
           '<w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>'
           f'<w:footnote w:id="1"><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:footnote></w:footnotes>').encode()
    part = Part(PackURI("/word/footnotes.xml"),
                "application/vnd.openxmlformats-officedocument.wordprocessingml.footnotes+xml", xml, d.part.package)
    d.part.relate_to(part, RT.FOOTNOTES)


def xlsx_bytes(rows: list[tuple] | None = None) -> bytes:
    """Two sheets: 端口 (ports, a merged cell A5:A6, a formula with a cached value) and 說明 (zh-Hant)."""
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "端口"
    for row in rows or [PORTS[0], (22, "ssh", "远程登录"), (443, "https", "加密网页"), (5432, "postgres", "資料庫"),
                        ("机房 A", "dns", "域名解析"), (None, "ntp", "时间同步"), (None, "smtp", "=1+1")]:
        ws.append(list(row))
    ws.merge_cells("A5:A7")
    ws2 = wb.create_sheet("說明")
    ws2.append(["項目", "內容"])
    ws2.append(["備份", ZH_HANT])
    ws2.append(["Release", EN])
    bio = io.BytesIO()
    wb.save(bio)
    return set_cached_value(bio.getvalue(), "xl/worksheets/sheet1.xml", "C7", "邮件")


def set_cached_value(xlsx: bytes, member: str, ref: str, value: str) -> bytes:
    """Give the formula in cell `ref` a cached string result, as Excel would have saved it (openpyxl
    writes formulas without one)."""
    def fix(xml: bytes) -> bytes:
        pattern = re.compile(rb'<c r="' + ref.encode() + rb'"([^>]*)><f>([^<]*)</f><v\s*/?>(?:</v>)?</c>')
        return pattern.sub(lambda m: b'<c r="' + ref.encode() + b'" t="str"><f>' + m.group(2) + b"</f><v>"
                           + value.encode() + b"</v></c>", xml)
    return rewrite_zip(xlsx, {member: fix})


def rewrite_zip(data: bytes, changes: dict, extra: dict[str, bytes] | None = None) -> bytes:
    """A copy of a ZIP with members changed (`changes`: name -> function of the old bytes) or added."""
    src = zipfile.ZipFile(io.BytesIO(data))
    bio = io.BytesIO()
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename in changes:
                body = changes[info.filename](body)
            dst.writestr(info.filename, body)
        for name, body in (extra or {}).items():
            dst.writestr(name, body)
    return bio.getvalue()


def pptx_bytes() -> bytes:
    from pptx import Presentation
    from pptx.util import Inches

    prs = Presentation()
    s = prs.slides.add_slide(prs.slide_layouts[1])
    s.shapes.title.text = "部署步骤"
    s.placeholders[1].text_frame.text = "安装软件包"
    low = s.shapes.add_textbox(Inches(1), Inches(6.5), Inches(4), Inches(0.5))
    low.text_frame.text = "最后：重启服务"
    high = s.shapes.add_textbox(Inches(1), Inches(1.3), Inches(4), Inches(0.3))
    high.text_frame.text = "首先：备份配置"
    s.notes_slide.notes_text_frame.text = "演讲者备注：演示时先关防火墙"
    s2 = prs.slides.add_slide(prs.slide_layouts[5])
    s2.shapes.title.text = "伺服器清單"
    t = s2.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for r, (a, b) in enumerate([("主機", "用途"), ("db1", "資料庫"), ("web1", "網頁")]):
        t.cell(r, 0).text, t.cell(r, 1).text = a, b
    s3 = prs.slides.add_slide(prs.slide_layouts[1])
    s3.shapes.title.text = "Summary"
    s3.placeholders[1].text_frame.text = EN
    bio = io.BytesIO()
    prs.save(bio)
    return bio.getvalue()


def epub_bytes() -> bytes:
    import os
    import tempfile

    from ebooklib import epub

    b = epub.EpubBook()
    b.set_identifier("rag-test-1")
    b.set_title("运维手册")
    b.set_language("zh")
    c1 = epub.EpubHtml(title="第一章", file_name="c1.xhtml", lang="zh")
    c1.content = ("<h1>第一章 安装</h1><p>" + ZH_HANS + "</p><table><tr><th>端口</th><th>服务</th></tr>"
                  "<tr><td>22</td><td>ssh</td></tr></table>")
    c2 = epub.EpubHtml(title="第二章", file_name="c2.xhtml", lang="zh-Hant")
    c2.content = "<h1>第二章 設定</h1><p>" + ZH_HANT + "</p>"
    c3 = epub.EpubHtml(title="Chapter 3", file_name="c3.xhtml", lang="en")
    c3.content = "<h1>Chapter 3 Releases</h1><p>" + EN + "</p>"
    for c in (c1, c2, c3):
        b.add_item(c)
    b.toc = (c1, c2, c3)
    b.add_item(epub.EpubNcx())
    b.add_item(epub.EpubNav())
    b.spine = ["nav", c1, c2, c3]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "book.epub")
        epub.write_epub(path, b)
        with open(path, "rb") as fh:
            return fh.read()


def eml_bytes(attachments: list[tuple[str, bytes]] = (), *, subject: str = "会议通知", body: str | None = None,
              inner: bytes | None = None) -> bytes:
    from email import message_from_bytes, policy
    from email.message import EmailMessage

    m = EmailMessage()
    m["From"] = "张三 <zhang@example.cn>"
    m["To"] = "李四 <li@example.cn>"
    m["Subject"] = subject
    m["Date"] = "Mon, 07 Dec 2026 10:00:00 +0800"
    m.set_content(body or ("明天上午十点在三楼会议室开会。\n\n" + ZH_HANT + "\n\n" + EN))
    for name, data in attachments:
        m.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    if inner is not None:
        m.add_attachment(message_from_bytes(inner, policy=policy.default))
    return m.as_bytes()


# --------------------------------------------------------------------------- hostile files (#26, item 4)

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def zip_bomb_docx(unpacked: int) -> bytes:
    """A real DOCX plus one member of `unpacked` zero bytes (deflates about 1000:1)."""
    bio = io.BytesIO()
    src = zipfile.ZipFile(io.BytesIO(docx_bytes(footnote=None)))
    with zipfile.ZipFile(bio, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        with dst.open("word/media/zeros.bin", "w", force_zip64=True) as fh:
            block = bytes(1 << 20)
            for _ in range(unpacked // len(block)):
                fh.write(block)
    return bio.getvalue()


def many_members_docx(members: int) -> bytes:
    return rewrite_zip(docx_bytes(footnote=None), {}, {f"customXml/item{i}.bin": b"" for i in range(members)})


def laughs_docx(levels: int = 10) -> bytes:
    """The billion laughs in word/document.xml."""
    ents = '<!ENTITY lol0 "lol">' + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">'
                                             for i in range(1, levels))
    body = (f'<?xml version="1.0"?><!DOCTYPE lolz [{ents}]><w:document xmlns:w="{W_NS}"><w:body><w:p><w:r>'
            f"<w:t>&lol{levels - 1};</w:t></w:r></w:p></w:body></w:document>").encode()
    return rewrite_zip(docx_bytes(footnote=None), {"word/document.xml": lambda _: body})


def external_entity_xlsx() -> bytes:
    """An external entity (a local file) in a worksheet."""
    def evil(xml: bytes) -> bytes:
        xml = xml.replace(b"<worksheet", b'<!DOCTYPE worksheet [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><worksheet', 1)
        return xml.replace(b"<t>ssh</t>", b"<t>&xxe;</t>", 1)
    return rewrite_zip(xlsx_bytes(), {"xl/worksheets/sheet1.xml": evil})


def sheet_xml(rows_xml: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
            + rows_xml + "</sheetData></worksheet>").encode()


def empty_rows_xlsx(rows: int) -> bytes:
    """A sheet of `rows` empty <row> elements, then one with a value."""
    body = "".join(f'<row r="{i}"/>' for i in range(1, rows + 1))
    body += f'<row r="{rows + 1}"><c r="A{rows + 1}" t="inlineStr"><is><t>end</t></is></c></row>'
    return rewrite_zip(xlsx_bytes(), {"xl/worksheets/sheet1.xml": lambda _: sheet_xml(body)})


def huge_shared_strings_xlsx(unpacked: int) -> bytes:
    """A workbook whose shared-strings table is about `unpacked` bytes (one string repeated: it deflates
    to little), registered as Excel registers it."""
    piece = "<si><t>重复的共享字符串 repeated shared string</t></si>".encode()
    count = unpacked // len(piece) + 1
    sst = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="http://schemas.openxmlformats.org/'
           b'spreadsheetml/2006/main" count="' + str(count).encode() + b'">' + piece * count + b"</sst>")

    def content_types(xml: bytes) -> bytes:
        return xml.replace(b"</Types>", b'<Override PartName="/xl/sharedStrings.xml" ContentType="application/'
                           b'vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>')

    def rels(xml: bytes) -> bytes:
        return xml.replace(b"</Relationships>", b'<Relationship Id="rIdSst" Type="http://schemas.openxmlformats.org/'
                           b'officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>')
    return rewrite_zip(xlsx_bytes(), {"[Content_Types].xml": content_types, "xl/_rels/workbook.xml.rels": rels},
                       {"xl/sharedStrings.xml": sst})


def nested_tables_docx(depth: int) -> bytes:
    inner = "<w:p><w:r><w:t>最深处</w:t></w:r></w:p>"
    for _ in range(depth):
        inner = f"<w:tbl><w:tr><w:tc>{inner}</w:tc></w:tr></w:tbl><w:p/>"
    body = f'<?xml version="1.0"?><w:document xmlns:w="{W_NS}"><w:body>{inner}</w:body></w:document>'.encode()
    return rewrite_zip(docx_bytes(footnote=None), {"word/document.xml": lambda _: body})


def macro_xlsm() -> bytes:
    """An .xlsm: macro-enabled content type and a VBA project; the text is read, the macro never runs."""
    def macro_type(xml: bytes) -> bytes:
        return xml.replace(b"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                           b"application/vnd.ms-excel.sheet.macroEnabled.main+xml")
    return rewrite_zip(xlsx_bytes(), {"[Content_Types].xml": macro_type},
                       {"xl/vbaProject.bin": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"Sub AutoOpen(): Shell \"rm -rf /\"" * 20})


def macro_docm() -> bytes:
    def macro_type(xml: bytes) -> bytes:
        return xml.replace(b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
                           b"application/vnd.ms-word.document.macroEnabled.main+xml")
    return rewrite_zip(docx_bytes(footnote=None), {"[Content_Types].xml": macro_type},
                       {"word/vbaProject.bin": b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512)})


def encrypted_docx(password: str = "secret") -> bytes:
    """A DOCX encrypted with a password, as Word saves it (an OLE2 file with an EncryptedPackage)."""
    from msoffcrypto.format.ooxml import OOXMLFile

    out = io.BytesIO()
    OOXMLFile(io.BytesIO(docx_bytes(footnote=None))).encrypt(password, out)
    return out.getvalue()


def eml_many_attachments(n: int) -> bytes:
    return eml_bytes([(f"note-{i}.txt", f"附件 {i}".encode()) for i in range(n)])


def eml_nested(depth: int) -> bytes:
    data = eml_bytes(subject="最里层", body="最里层的正文。")
    for level in range(depth):
        data = eml_bytes(subject=f"第 {level} 层", body=f"第 {level} 层的正文。", inner=data)
    return data


# --------------------------------------------------------------------------- images for OCR

CJK_FONT = "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc"  # Debian's fonts-noto-cjk
OCR_TEXTS = {
    "zh-Hans": ["防火墙只开放必要的端口，其余端口一律关闭。", "软件包管理器记录系统中安装的每一个软件包。"],
    "zh-Hant": ["伺服器的設定檔存放在系統目錄中，修改前請先備份。", "套件管理員會記錄系統上安裝的每一個套件。"],
    "en": ["Pinning lets a machine follow the stable release for most packages.",
           "The package manager keeps a list of every package that is installed."],
}


def text_image(lines: list[str], dpi: int = 300, points: int = 12):
    """A strip of an A4 page (full width) with `lines` typeset at `points` pt, as scanned at `dpi`."""
    from PIL import Image, ImageDraw, ImageFont

    size = round(points / 72 * dpi)
    img = Image.new("L", (round(8.27 * dpi), round((1 + 0.3 * len(lines)) * dpi)), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.truetype(CJK_FONT, size)
    for i, line in enumerate(lines):
        draw.text((round(0.7 * dpi), round(0.5 * dpi) + i * round(size * 1.8)), line, font=font, fill=0)
    return img


def image_bytes(images: list, fmt: str = "PNG") -> bytes:
    bio = io.BytesIO()
    images[0].save(bio, fmt, save_all=len(images) > 1, append_images=images[1:])
    return bio.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` pixels and holds almost none: a decompression bomb's shape."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def many_page_tiff(pages: int) -> bytes:
    """A TIFF of `pages` 1x1 bilevel frames, its IFD chain written by hand (Pillow takes minutes to
    save 10,000 frames)."""
    import struct

    strip = 8  # one byte of pixel data right after the header
    entries = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 1), (259, 3, 1, 1), (262, 3, 1, 1),
               (273, 4, 1, strip), (278, 3, 1, 1), (279, 4, 1, 1)]
    ifd_size = 2 + 12 * len(entries) + 4
    first = 12
    out = bytearray(b"II*\x00" + struct.pack("<I", first) + b"\x80\x00\x00\x00")
    for i in range(pages):
        nxt = first + (i + 1) * ifd_size if i + 1 < pages else 0
        out += struct.pack("<H", len(entries))
        for tag, kind, count, value in entries:
            out += struct.pack("<HHI", tag, kind, count) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
        out += struct.pack("<I", nxt)
    return bytes(out)
