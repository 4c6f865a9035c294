# embed_bytes.cmake — what embed_assets.cmake and embed_backbones.cmake share: a file as a C byte
# array with a NUL after its bytes (so that a text is also a C string). include() it, then
#   kiln_embed_bytes(<file> <C element type> <array name> <out: declaration> <out: byte count>)
# sets <out: declaration> to "/* <file's name> */\nstatic const <type> <name>[<n> + 1] = {...};\n\n"
# (16 bytes per line) and <out: byte count> to n. file(READ ... HEX) does the reading.
function(kiln_embed_bytes path type name out_decl out_len)
  file(READ "${path}" hex HEX)
  string(LENGTH "${hex}" n)
  math(EXPR len "${n} / 2")
  # 16 bytes per line: "0x3c,0x21,..." (CMake's regular expressions have no {n})
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(REPEAT "0x..," 16 line)
  string(REGEX REPLACE "(${line})" "\\1\n    " hex "${hex}")
  get_filename_component(base "${path}" NAME)
  set(${out_decl} "/* ${base} */\nstatic const ${type} ${name}[${len} + 1] = {\n    ${hex}0x00};\n\n"
      PARENT_SCOPE)
  set(${out_len} ${len} PARENT_SCOPE)
endfunction()
