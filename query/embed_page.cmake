# Writes OUT: a C file defining qf_serve_page_html[] (NUL-terminated) from
# the HTML file IN, the search page of `qformer serve`, served from memory.
# Bytes rather than a string literal: -Wpedantic caps literals at 4095 chars.
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE ${OUT} "/* generated from query/serve_page.html by query/embed_page.cmake */\nconst char qf_serve_page_html[] = {\n${bytes}0 };\n")
