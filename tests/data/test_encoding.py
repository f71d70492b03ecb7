from emoscale.data.encoding import read_text, repair


def test_c1_characters_become_what_windows_1252_means():
    assert (
        repair("he\x92s lost it\x85 \x93no\x94 \x91yes\x92 \x96 \x97")
        == "he’s lost it… “no” ‘yes’ – —"
    )


def test_mojibake_is_decoded_back_and_real_accents_are_kept():
    assert repair("heâ€™s") == "he’s"  # UTF-8 read as Windows-1252
    assert repair("heâ\x80\x99s") == "he’s"  # UTF-8 read as Latin-1
    assert repair("cafÃ©") == "café"
    assert repair("café, naïve, Ça va, 朱闪闪") == "café, naïve, Ça va, 朱闪闪"


def test_non_breaking_space_and_undefined_bytes():
    assert repair("a\xa0b") == "a b"
    assert repair("x\x81y") == "x\x81y"  # 0x81 means nothing in Windows-1252: left as it is


def test_read_text_accepts_utf8_with_bom_and_windows_1252(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufeffSr No.,Utterance\n".encode())
    assert read_text(tmp_path / "bom.csv") == "Sr No.,Utterance\n"
    (tmp_path / "old.csv").write_bytes(b"you\x92re")
    assert repair(read_text(tmp_path / "old.csv")) == "you’re"
