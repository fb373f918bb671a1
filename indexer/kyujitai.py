"""Old-form (旧字体) and variant kanji → the forms in use today (新字体), for search folding.

Applied by :func:`indexer.analysis.normalize` *after* NFKC, identically at index and query time, so that
圖書館, 舊字體 or 國學院 find 図書館, 旧字体 and 国学院. Sudachi alone does not do this: it reads 圖書館 as
ズショカン and keeps 國學院 as written.

What is (deliberately) not here:

* The 62 traditional forms of the 常用漢字表 that Unicode encodes only as CJK *compatibility* ideographs
  (社 U+FA4C, 都 U+FA26, 者 U+FA5B, 海 U+FA45, 神 U+FA19 …): NFKC already maps them to the unified form, so a key
  for them would never be reached. ``tests/test_analysis.py`` checks that no key is changed by NFKC.
* Chinese simplified forms (图, 书): not what a Japanese searcher types, and some collide with Japanese kanji.
* 廻 → 回 and similar merges of characters that still form words of their own (輪廻 is not 輪回).

The 常用漢字表 run was cross-checked against the list of the 2010 table's traditional forms in
mimneko/kanji-data (CC0); the other runs are old forms outside the table's parentheses (飮, 隸, 晉, 淸 …) and name
variants.

Invariants (tested): every key and value is one character; no key is changed by NFKC; no value is itself a key
(the fold is idempotent, one pass of ``str.translate`` is enough); no key maps to itself.
"""

from __future__ import annotations

# Each string is a run of (old, new) pairs; the grouping is only for reading the source.
_JOYO_PAIRS = (
    # 常用漢字表 (2010): the traditional forms given in parentheses that are unified ideographs.
    "亞亜惡悪壓圧圍囲醫医爲為壹壱隱隠榮栄營営衞衛驛駅圓円鹽塩緣縁艷艶應応歐欧毆殴櫻桜奧奥橫横溫温穩穏"
    "假仮價価畫画會会繪絵壞壊懷懐槪概擴拡殼殻覺覚學学嶽岳樂楽渴渇罐缶卷巻陷陥勸勧寬寛關関歡歓觀観"
    "氣気歸帰龜亀僞偽戲戯犧犠舊旧據拠擧挙虛虚峽峡挾挟狹狭鄕郷曉暁區区驅駆勳勲薰薫徑径莖茎惠恵揭掲"
    "溪渓經経螢蛍輕軽繼継鷄鶏藝芸擊撃缺欠硏研縣県儉倹劍剣險険圈圏檢検獻献權権顯顕驗験嚴厳廣広效効"
    "恆恒黃黄鑛鉱號号國国黑黒碎砕濟済齋斎劑剤雜雑參参棧桟蠶蚕慘惨贊賛殘残絲糸齒歯兒児辭辞濕湿實実"
    "寫写釋釈壽寿收収從従澁渋獸獣縱縦肅粛處処緖緒敍叙將将稱称涉渉燒焼證証奬奨條条狀状乘乗淨浄剩剰"
    "疊畳繩縄壤壌孃嬢讓譲釀醸觸触囑嘱眞真寢寝愼慎盡尽圖図粹粋醉酔穗穂隨随髓髄樞枢數数瀨瀬聲声齊斉"
    "靜静竊窃攝摂專専淺浅戰戦踐践錢銭潛潜纖繊禪禅雙双壯壮爭争莊荘搜捜插挿巢巣曾曽瘦痩裝装總総騷騒"
    "增増藏蔵臟臓卽即屬属續続墮堕對対體体帶帯滯滞臺台瀧滝擇択澤沢擔担單単膽胆團団斷断彈弾遲遅癡痴"
    "蟲虫晝昼鑄鋳廳庁徵徴聽聴敕勅鎭鎮遞逓鐵鉄點点轉転傳伝燈灯當当黨党盜盗稻稲鬭闘德徳獨独讀読屆届"
    "貳弐惱悩腦脳霸覇拜拝廢廃賣売麥麦發発髮髪拔抜晚晩蠻蛮祕秘濱浜甁瓶拂払佛仏倂併竝並餠餅邊辺變変"
    "辨弁瓣弁辯弁步歩寶宝豐豊襃褒飜翻每毎萬万滿満麵麺默黙彌弥譯訳藥薬與与豫予餘余譽誉搖揺樣様謠謡"
    "來来賴頼亂乱覽覧龍竜兩両獵猟綠緑淚涙壘塁禮礼勵励戾戻靈霊齡齢曆暦歷歴戀恋鍊錬爐炉勞労郞郎樓楼"
    "錄録灣湾"
    # 2010 additions whose 「許容字体」 is the everyday form: 剝/剥, 𠮟/叱, 塡/填, 頰/頬.
    "剝剥𠮟叱塡填頰頬"
)

_JINMEIYO_PAIRS = (
    # Old forms (人名用漢字 異体字 and pre-1946 forms) that are not in the 常用漢字表 parentheses but that old
    # books, author names and place names are full of.
    "鬪闘囘回內内戶戸歲歳舍舎顏顔强強旣既沒没兔兎姬姫尙尚俱倶產産淸清靑青敎教說説稅税脫脱悅悦"
    "銳鋭閱閲絕絶吳呉娛娯彥彦晉晋堯尭槇槙遙遥瑤瑶凜凛萠萌巖巌醬醤麪麺廐厩廏厩雞鶏溉漑册冊冰氷飮飲隸隷"
    "姊姉獎奨峯峰凉涼駈駆盃杯埜野"
)

_NAME_VARIANTS = (
    # 異体字 common in personal and place names, which a searcher types in the everyday form:
    # はしご高, たつさき (U+FA11 is a *unified* ideograph that NFKC leaves alone), 渡邉/渡邊, 嶋/嶌, 濵, 冨, 薗.
    "髙高﨑崎嵜崎邉辺嶋島嶌島濵浜冨富薗園"
)


def _pairs(run: str) -> dict[str, str]:
    chars = list(run)  # list() splits by code point, so non-BMP forms such as 𠮟 stay one character
    if len(chars) % 2:
        raise ValueError("a pair run must have an even number of characters")
    return dict(zip(chars[0::2], chars[1::2], strict=True))


KYUJITAI: dict[str, str] = {**_pairs(_JOYO_PAIRS), **_pairs(_JINMEIYO_PAIRS), **_pairs(_NAME_VARIANTS)}
"""旧字体/異体字 → 新字体, one character to one character."""
