//! sgml-synth: the synthetic marketplace export behind `sgml generate`, deterministic
//! for a seed. Kept out of the production crates: nothing that ingests real data
//! links it.
//!
//! Sellers and buyers in many countries and currencies, titles in several
//! languages, prices driven by category, brand, condition, seller and market plus
//! noise, seasonality, cross-border orders, and the PII columns a real operational
//! export carries. `bad_fraction` mixes in the bad rows real exports have.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime};
use flate2::Compression;
use flate2::write::GzEncoder;
use rand::prelude::*;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

mod photos;
pub use photos::FOLDER as PHOTO_FOLDER;

/// A file the generator writes beside its tables, describing them (generator,
/// parameters). Informational only: it changes nothing about how the data is
/// ingested (the demo key is asked for explicitly, with `--demo`).
pub const SYNTHETIC_MARKER: &str = "SYNTHETIC.json";

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("--bad-fraction must be between 0 and 0.5, got {0}")]
    BadFraction(f64),
    #[error("--photos must be between 0 and 1, got {0}")]
    Photos(f64),
    #[error("--orders must be at least 1")]
    NoOrders,
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {file}: {source}")]
    Csv {
        file: String,
        #[source]
        source: csv::Error,
    },
}

type Result<T> = std::result::Result<T, SynthError>;

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Params {
    pub orders: usize,
    pub seed: u64,
    pub bad_fraction: f64,
    /// Write `.csv.gz` instead of `.csv`.
    pub gzip: bool,
    /// Share of listings photographed (`images/<product_id>.jpg`, and edited copies for
    /// their relistings); 0 writes no photos and leaves `image_uri` empty.
    pub photos: f64,
}

/// The last day of generated orders: fixed, so a seed gives the same data whenever it runs.
pub fn end_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, 31).expect("valid date")
}

const DAYS: i64 = 365;

struct Market {
    country: &'static str,
    currency: &'static str,
    /// USD per unit of the currency, at the start.
    usd: f64,
    lang: usize,
    phone: &'static str,
    /// Price level of the market relative to the US.
    level: f64,
    weight: f64,
}

const MARKETS: &[Market] = &[
    Market {
        country: "US",
        currency: "USD",
        usd: 1.0,
        lang: EN,
        phone: "+1",
        level: 1.0,
        weight: 20.0,
    },
    Market {
        country: "GB",
        currency: "GBP",
        usd: 1.27,
        lang: EN,
        phone: "+44",
        level: 1.05,
        weight: 8.0,
    },
    Market {
        country: "DE",
        currency: "EUR",
        usd: 1.08,
        lang: DE,
        phone: "+49",
        level: 1.02,
        weight: 10.0,
    },
    Market {
        country: "FR",
        currency: "EUR",
        usd: 1.08,
        lang: FR,
        phone: "+33",
        level: 1.04,
        weight: 7.0,
    },
    Market {
        country: "ES",
        currency: "EUR",
        usd: 1.08,
        lang: ES,
        phone: "+34",
        level: 0.93,
        weight: 5.0,
    },
    Market {
        country: "IT",
        currency: "EUR",
        usd: 1.08,
        lang: IT,
        phone: "+39",
        level: 0.97,
        weight: 5.0,
    },
    Market {
        country: "NL",
        currency: "EUR",
        usd: 1.08,
        lang: EN,
        phone: "+31",
        level: 1.03,
        weight: 3.0,
    },
    Market {
        country: "PL",
        currency: "PLN",
        usd: 0.25,
        lang: EN,
        phone: "+48",
        level: 0.78,
        weight: 3.0,
    },
    Market {
        country: "SE",
        currency: "SEK",
        usd: 0.095,
        lang: EN,
        phone: "+46",
        level: 1.12,
        weight: 2.0,
    },
    Market {
        country: "JP",
        currency: "JPY",
        usd: 0.0067,
        lang: JA,
        phone: "+81",
        level: 1.08,
        weight: 6.0,
    },
    Market {
        country: "CN",
        currency: "CNY",
        usd: 0.14,
        lang: ZH,
        phone: "+86",
        level: 0.72,
        weight: 6.0,
    },
    Market {
        country: "BR",
        currency: "BRL",
        usd: 0.20,
        lang: PT,
        phone: "+55",
        level: 0.85,
        weight: 4.0,
    },
    Market {
        country: "MX",
        currency: "MXN",
        usd: 0.058,
        lang: ES,
        phone: "+52",
        level: 0.8,
        weight: 3.0,
    },
    Market {
        country: "IN",
        currency: "INR",
        usd: 0.012,
        lang: EN,
        phone: "+91",
        level: 0.6,
        weight: 5.0,
    },
    Market {
        country: "CA",
        currency: "CAD",
        usd: 0.74,
        lang: EN,
        phone: "+1",
        level: 1.03,
        weight: 4.0,
    },
    Market {
        country: "AU",
        currency: "AUD",
        usd: 0.66,
        lang: EN,
        phone: "+61",
        level: 1.1,
        weight: 3.0,
    },
    Market {
        country: "AE",
        currency: "AED",
        usd: 0.27,
        lang: EN,
        phone: "+971",
        level: 1.06,
        weight: 2.0,
    },
    Market {
        country: "KR",
        currency: "KRW",
        usd: 0.00075,
        lang: KO,
        phone: "+82",
        level: 0.95,
        weight: 2.0,
    },
];

const EN: usize = 0;
const DE: usize = 1;
const FR: usize = 2;
const ES: usize = 3;
const IT: usize = 4;
const PT: usize = 5;
const JA: usize = 6;
const ZH: usize = 7;
const KO: usize = 8;
const LANG_CODES: [&str; 9] = ["en", "de", "fr", "es", "it", "pt", "ja", "zh", "ko"];

struct Category {
    name: &'static str,
    /// Median USD price of a new, average-brand item.
    usd: f64,
    /// Product nouns per language (index = language).
    nouns: [&'static str; 9],
    brands: &'static [(&'static str, f64)],
    /// Extra demand in November and December.
    holiday: f64,
}

const CATEGORIES: &[Category] = &[
    Category {
        name: "Electronics",
        usd: 180.0,
        nouns: [
            "Wireless Headphones",
            "Kabellose Kopfhörer",
            "Casque sans fil",
            "Auriculares inalámbricos",
            "Cuffie wireless",
            "Fones sem fio",
            "ワイヤレスヘッドホン",
            "无线耳机",
            "무선 헤드폰",
        ],
        brands: &[
            ("Sonex", 1.4),
            ("Voltra", 1.0),
            ("Kirin", 0.7),
            ("Aurion", 1.9),
        ],
        holiday: 0.6,
    },
    Category {
        name: "Phones",
        usd: 420.0,
        nouns: [
            "Smartphone 128GB",
            "Smartphone 128 GB",
            "Smartphone 128 Go",
            "Teléfono inteligente 128GB",
            "Smartphone 128GB",
            "Celular 128GB",
            "スマートフォン 128GB",
            "智能手机 128GB",
            "스마트폰 128GB",
        ],
        brands: &[
            ("Nova", 1.5),
            ("Pixelon", 1.2),
            ("Mirai", 0.8),
            ("Zeta", 0.6),
        ],
        holiday: 0.5,
    },
    Category {
        name: "Clothing",
        usd: 35.0,
        nouns: [
            "Cotton T-Shirt",
            "Baumwoll-T-Shirt",
            "T-shirt en coton",
            "Camiseta de algodón",
            "Maglietta in cotone",
            "Camiseta de algodão",
            "コットンTシャツ",
            "纯棉T恤",
            "면 티셔츠",
        ],
        brands: &[
            ("Urbano", 1.0),
            ("Nordika", 1.3),
            ("Basico", 0.6),
            ("Maison Lune", 2.2),
        ],
        holiday: 0.3,
    },
    Category {
        name: "Shoes",
        usd: 75.0,
        nouns: [
            "Running Shoes",
            "Laufschuhe",
            "Chaussures de course",
            "Zapatillas de running",
            "Scarpe da corsa",
            "Tênis de corrida",
            "ランニングシューズ",
            "跑步鞋",
            "러닝화",
        ],
        brands: &[("Stride", 1.2), ("Vento", 1.0), ("Pasos", 0.7)],
        holiday: 0.2,
    },
    Category {
        name: "Home & Kitchen",
        usd: 55.0,
        nouns: [
            "Stainless Steel Pan",
            "Edelstahlpfanne",
            "Poêle en inox",
            "Sartén de acero inoxidable",
            "Padella in acciaio",
            "Frigideira de inox",
            "ステンレスフライパン",
            "不锈钢煎锅",
            "스테인리스 프라이팬",
        ],
        brands: &[("Cucina", 1.1), ("Hearth", 1.0), ("Kasa", 0.75)],
        holiday: 0.4,
    },
    Category {
        name: "Toys",
        usd: 30.0,
        nouns: [
            "Building Blocks Set",
            "Bausteine-Set",
            "Jeu de construction",
            "Set de bloques",
            "Set di mattoncini",
            "Blocos de montar",
            "ブロックセット",
            "积木套装",
            "블록 세트",
        ],
        brands: &[("Brixo", 1.3), ("Playtime", 0.9), ("Kidzy", 0.7)],
        holiday: 1.2,
    },
    Category {
        name: "Books",
        usd: 18.0,
        nouns: [
            "Hardcover Cookbook",
            "Kochbuch gebunden",
            "Livre de cuisine relié",
            "Libro de cocina",
            "Libro di cucina",
            "Livro de receitas",
            "料理本 ハードカバー",
            "精装食谱",
            "요리책 양장본",
        ],
        brands: &[("Penhouse", 1.0), ("Leaf Press", 1.1)],
        holiday: 0.5,
    },
    Category {
        name: "Beauty",
        usd: 25.0,
        nouns: [
            "Face Moisturizer 50ml",
            "Gesichtscreme 50ml",
            "Crème hydratante 50ml",
            "Crema hidratante 50ml",
            "Crema viso 50ml",
            "Hidratante facial 50ml",
            "保湿クリーム 50ml",
            "面霜 50ml",
            "수분 크림 50ml",
        ],
        brands: &[("Lumière", 1.8), ("Dew", 1.0), ("Pura", 0.7)],
        holiday: 0.4,
    },
    Category {
        name: "Sports",
        usd: 60.0,
        nouns: [
            "Yoga Mat",
            "Yogamatte",
            "Tapis de yoga",
            "Esterilla de yoga",
            "Tappetino yoga",
            "Tapete de yoga",
            "ヨガマット",
            "瑜伽垫",
            "요가 매트",
        ],
        brands: &[("Peak", 1.2), ("Flexa", 0.9)],
        holiday: 0.1,
    },
    Category {
        name: "Jewelry",
        usd: 140.0,
        nouns: [
            "Silver Necklace",
            "Silberkette",
            "Collier en argent",
            "Collar de plata",
            "Collana d'argento",
            "Colar de prata",
            "シルバーネックレス",
            "银项链",
            "은 목걸이",
        ],
        brands: &[("Aurea", 2.0), ("Stella", 1.0), ("Glint", 0.6)],
        holiday: 0.9,
    },
    Category {
        name: "Garden",
        usd: 45.0,
        nouns: [
            "Garden Hose 20m",
            "Gartenschlauch 20m",
            "Tuyau d'arrosage 20m",
            "Manguera de jardín 20m",
            "Tubo da giardino 20m",
            "Mangueira de jardim 20m",
            "ガーデンホース 20m",
            "花园水管 20米",
            "정원 호스 20m",
        ],
        brands: &[("Verde", 1.0), ("Bloom", 1.2)],
        holiday: -0.4,
    },
    Category {
        name: "Pet Supplies",
        usd: 28.0,
        nouns: [
            "Dog Bed Large",
            "Hundebett groß",
            "Lit pour chien grand",
            "Cama para perro grande",
            "Cuccia per cani grande",
            "Cama para cachorro grande",
            "犬用ベッド 大",
            "大号狗床",
            "대형 강아지 침대",
        ],
        brands: &[("Pawly", 1.0), ("Furra", 1.3)],
        holiday: 0.2,
    },
];

const ADJECTIVES: [&[&str]; 9] = [
    &["Premium", "Classic", "Compact", "Pro", "Eco", "Deluxe"],
    &["Premium", "Klassisch", "Kompakt", "Profi", "Öko", "Deluxe"],
    &[
        "Premium",
        "Classique",
        "Compact",
        "Pro",
        "Écologique",
        "Luxe",
    ],
    &[
        "Premium",
        "Clásico",
        "Compacto",
        "Pro",
        "Ecológico",
        "Deluxe",
    ],
    &[
        "Premium",
        "Classico",
        "Compatto",
        "Pro",
        "Ecologico",
        "Deluxe",
    ],
    &[
        "Premium",
        "Clássico",
        "Compacto",
        "Pro",
        "Ecológico",
        "Luxo",
    ],
    &[
        "プレミアム",
        "クラシック",
        "コンパクト",
        "プロ",
        "エコ",
        "デラックス",
    ],
    &["高级", "经典", "紧凑", "专业", "环保", "豪华"],
    &["프리미엄", "클래식", "컴팩트", "프로", "에코", "디럭스"],
];

const COLORS: [&[&str]; 9] = [
    &["Black", "White", "Blue", "Red", "Green"],
    &["Schwarz", "Weiß", "Blau", "Rot", "Grün"],
    &["Noir", "Blanc", "Bleu", "Rouge", "Vert"],
    &["Negro", "Blanco", "Azul", "Rojo", "Verde"],
    &["Nero", "Bianco", "Blu", "Rosso", "Verde"],
    &["Preto", "Branco", "Azul", "Vermelho", "Verde"],
    &["ブラック", "ホワイト", "ブルー", "レッド", "グリーン"],
    &["黑色", "白色", "蓝色", "红色", "绿色"],
    &["블랙", "화이트", "블루", "레드", "그린"],
];

const FIRST_NAMES: &[&str] = &[
    "Olivia", "Liam", "Emma", "Noah", "Sofia", "Mateo", "Hannah", "Lukas", "Chloé", "Hugo",
    "Giulia", "Marco", "Yuki", "Haruto", "Wei", "Mei", "Ana", "João", "Priya", "Arjun", "Fatima",
    "Omar", "Ji-woo", "Min-jun", "Zofia", "Jakub", "Astrid", "Erik",
];
const LAST_NAMES: &[&str] = &[
    "Smith",
    "Müller",
    "Dubois",
    "García",
    "Rossi",
    "Silva",
    "Tanaka",
    "Wang",
    "Kim",
    "Kowalski",
    "Andersson",
    "Patel",
    "Haddad",
    "Johnson",
    "Schmidt",
    "Martin",
    "López",
    "Bianchi",
    "Santos",
    "Suzuki",
    "Li",
    "Park",
    "Nowak",
    "Berg",
    "Sharma",
    "Khan",
];
const STREETS: &[&str] = &[
    "Main Street",
    "Hauptstraße",
    "Rue de la Paix",
    "Calle Mayor",
    "Via Roma",
    "Rua Augusta",
    "Sakura-dori",
    "Nanjing Road",
    "Gangnam-daero",
    "Market Street",
    "High Street",
    "Ulica Długa",
];
const CITIES: &[&str] = &[
    "Springfield",
    "Berlin",
    "Lyon",
    "Madrid",
    "Milano",
    "Lisboa",
    "Osaka",
    "Shanghai",
    "Seoul",
    "Toronto",
    "Leeds",
    "Kraków",
    "Uppsala",
    "Sydney",
    "Dubai",
    "Pune",
    "Monterrey",
    "Curitiba",
];
const CHANNELS: &[(&str, f64)] = &[
    ("web", 0.55),
    ("app", 0.35),
    ("marketplace", 0.07),
    ("phone", 0.03),
];
const CRAWL_SOURCES: &[&str] = &["pricespy", "idealo", "kelkoo", "shopmania", "pricerunner"];

struct Seller {
    id: String,
    market: usize,
    categories: [usize; 2],
    level: f64,
}

struct Product {
    id: String,
    seller: usize,
    category: usize,
    brand: usize,
    condition: &'static str,
    /// USD price the product sells at in the US market, before noise.
    usd: f64,
    /// The manufacturer's model code ("KX-4821"), in every title of the product.
    code: String,
    /// Another seller's listing of the same product: which one, and how its title
    /// was edited.
    relisting: Option<Relisting>,
}

/// The ground truth of the duplicate-listings task: a listing is a relisting of an
/// original (by another seller, perhaps in another market and language), its title
/// edited the way sellers do.
struct Relisting {
    of: usize,
    edits: Vec<Edit>,
}

#[derive(Clone, Copy, PartialEq)]
enum Edit {
    /// Two words swap places.
    Reorder,
    /// A letter swapped, dropped or doubled.
    Typo,
    /// A sales word added ("New", "Free Shipping").
    ExtraWord,
    /// A long word cut short ("Wireless" → "Wire.").
    Abbreviate,
    /// The brand in capitals, lower case or hyphenated.
    BrandSpelling,
    /// The model code without its hyphen, in lower case or spaced.
    CodeFormat,
}

const EDITS: [Edit; 6] = [
    Edit::Reorder,
    Edit::Typo,
    Edit::ExtraWord,
    Edit::Abbreviate,
    Edit::BrandSpelling,
    Edit::CodeFormat,
];
const EXTRA_WORDS: &[&str] = &[
    "New",
    "Original",
    "2026",
    "Free Shipping",
    "Top Seller",
    "Genuine",
    "Hot Sale",
];
/// Share of products relisted by other sellers, and of duplicate groups (and lone
/// listings) in the labelled cut.
const RELISTED: f64 = 0.12;
const LABELLED: f64 = 0.5;

struct Customer {
    id: String,
    market: usize,
    name: String,
    email: String,
    phone: String,
    address: String,
}

/// What was written, for the command's summary.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub files: Vec<(String, usize)>,
}

fn normal(rng: &mut impl Rng) -> f64 {
    // Box–Muller: one standard normal draw (rand 0.8 has no Normal without rand_distr).
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.r#gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn weighted<'a, T>(rng: &mut impl Rng, items: &'a [T], weight: impl Fn(&T) -> f64) -> &'a T {
    items
        .choose_weighted(rng, weight)
        .expect("non-empty, positive weights")
}

/// FX: USD per unit of currency on a day, a deterministic slow wave per currency.
fn usd_rate(market: &Market, day: i64) -> f64 {
    if market.currency == "USD" {
        return 1.0;
    }
    let phase = market.currency.bytes().map(|b| b as f64).sum::<f64>();
    market.usd * (1.0 + 0.03 * ((day as f64) / 58.0 + phase).sin())
}

struct Out {
    writer: csv::Writer<Box<dyn Write>>,
    rows: usize,
    name: String,
}

impl Out {
    fn create(dir: &Path, table: &str, gzip: bool, header: &[&str]) -> Result<Out> {
        let name = if gzip {
            format!("{table}.csv.gz")
        } else {
            format!("{table}.csv")
        };
        let path = dir.join(&name);
        let file = BufWriter::new(File::create(&path).map_err(io_at(&path))?);
        let sink: Box<dyn Write> = if gzip {
            Box::new(GzEncoder::new(file, Compression::default()))
        } else {
            Box::new(file)
        };
        let mut out = Out {
            writer: csv::Writer::from_writer(sink),
            rows: 0,
            name,
        };
        out.row(header)?;
        out.rows = 0;
        Ok(out)
    }

    fn row<I, B>(&mut self, fields: I) -> Result<()>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        self.writer
            .write_record(fields)
            .map_err(|source| SynthError::Csv {
                file: self.name.clone(),
                source,
            })?;
        self.rows += 1;
        Ok(())
    }

    fn finish(self) -> Result<(String, usize)> {
        let sink = self.writer.into_inner().map_err(|e| SynthError::Io {
            path: self.name.clone(),
            source: e.into_error(),
        })?;
        drop(sink); // GzEncoder finishes on drop
        Ok((self.name, self.rows))
    }
}

pub fn generate(dir: &Path, p: &Params) -> Result<Summary> {
    if !(0.0..=0.5).contains(&p.bad_fraction) {
        return Err(SynthError::BadFraction(p.bad_fraction));
    }
    if !(0.0..=1.0).contains(&p.photos) {
        return Err(SynthError::Photos(p.photos));
    }
    if p.orders == 0 {
        return Err(SynthError::NoOrders);
    }
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let end = end_date();
    let start = end - Duration::days(DAYS - 1);
    let market_idx: Vec<usize> = (0..MARKETS.len()).collect();
    let pick_market = |rng: &mut ChaCha8Rng| *weighted(rng, &market_idx, |i| MARKETS[*i].weight);

    let sellers: Vec<Seller> = (0..(p.orders / 150).max(12))
        .map(|i| Seller {
            id: format!("S{i:05}"),
            market: pick_market(&mut rng),
            categories: [
                rng.gen_range(0..CATEGORIES.len()),
                rng.gen_range(0..CATEGORIES.len()),
            ],
            level: (0.15 * normal(&mut rng)).exp(),
        })
        .collect();
    let products: Vec<Product> = (0..(p.orders / 4).max(60))
        .map(|i| {
            let seller = rng.gen_range(0..sellers.len());
            let category = sellers[seller].categories[rng.gen_range(0..2)];
            let cat = &CATEGORIES[category];
            let brand = rng.gen_range(0..cat.brands.len());
            let condition = *weighted(
                &mut rng,
                &[("new", 0.75), ("used", 0.15), ("refurbished", 0.10)],
                |c| c.1,
            );
            let condition_factor = match condition.0 {
                "new" => 1.0,
                "refurbished" => 0.8,
                _ => 0.6,
            };
            let usd = cat.usd
                * cat.brands[brand].1
                * condition_factor
                * sellers[seller].level
                * (0.35 * normal(&mut rng)).exp();
            Product {
                id: format!("P{i:06}"),
                seller,
                category,
                brand,
                condition: condition.0,
                usd,
                code: String::new(),
                relisting: None,
            }
        })
        .collect();
    // Model codes and relistings draw from their own stream, so the rest of the
    // export is what it was before duplicates were modelled, for a seed.
    let mut dup_rng = ChaCha8Rng::seed_from_u64(p.seed ^ 0x00D0_0B1E_5EED);
    let products = with_relistings(products, sellers.len(), &mut dup_rng);
    let customers: Vec<Customer> = (0..(p.orders / 3).max(40))
        .map(|i| {
            let market = pick_market(&mut rng);
            let first = FIRST_NAMES.choose(&mut rng).expect("non-empty");
            let last = LAST_NAMES.choose(&mut rng).expect("non-empty");
            let email_user: String = format!("{first}.{last}{}", i % 97)
                .to_lowercase()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
                .collect();
            Customer {
                id: format!("{}", 100_000 + i * 7),
                market,
                name: format!("{first} {last}"),
                email: format!(
                    "{email_user}@{}",
                    ["mail.example.com", "inbox.example.net", "example.org"][i % 3]
                ),
                phone: format!(
                    "{} {} {:04} {:04}",
                    MARKETS[market].phone,
                    rng.gen_range(20..99),
                    rng.gen_range(0..10_000),
                    rng.gen_range(0..10_000)
                ),
                address: format!(
                    "{} {}, {}",
                    rng.gen_range(1..250),
                    STREETS.choose(&mut rng).expect("non-empty"),
                    CITIES.choose(&mut rng).expect("non-empty")
                ),
            }
        })
        .collect();

    // Photos draw from their own stream too.
    let mut photo_rng = ChaCha8Rng::seed_from_u64(p.seed ^ 0x0000_F070_5EED);
    let image_uris = photos::write(dir, p.photos, p.bad_fraction, &mut photo_rng, &products)?;
    let files = vec![
        write_products(dir, p, &mut rng, &sellers, &products, &image_uris, start)?,
        write_duplicate_groups(dir, p, &mut dup_rng, &products, end)?,
        write_orders(dir, p, &mut rng, &sellers, &products, &customers, start)?,
        write_crawled(dir, p, &mut rng, &products, end)?,
        write_fx(dir, p, start, end)?,
        write_deletions(dir, p, &mut rng, &customers, end)?,
    ];
    let marker = serde_json::json!({
        "generator": "sgml generate",
        "synthetic": true,
        "params": p,
        "note": "synthetic data: no real person is in it; `sgml ingest --demo` anonymizes it with the public demo key",
    });
    let marker_path = dir.join(SYNTHETIC_MARKER);
    std::fs::write(
        &marker_path,
        serde_json::to_vec_pretty(&marker).expect("the marker serializes"),
    )
    .map_err(io_at(&marker_path))?;
    Ok(Summary { files })
}

/// Codes for every product, then relistings of about [`RELISTED`] of them by 1–3
/// other sellers each (appended, with ids continuing the sequence).
fn with_relistings(
    mut products: Vec<Product>,
    sellers: usize,
    rng: &mut ChaCha8Rng,
) -> Vec<Product> {
    for prod in &mut products {
        let letters: String = (0..2).map(|_| rng.gen_range(b'A'..=b'Z') as char).collect();
        prod.code = format!("{letters}-{}", rng.gen_range(1000..10_000));
    }
    let originals = products.len();
    for of in 0..originals {
        if !rng.gen_bool(RELISTED) {
            continue;
        }
        let copies = 1 + usize::from(rng.gen_bool(0.35)) + usize::from(rng.gen_bool(0.15));
        for _ in 0..copies {
            let seller = loop {
                let s = rng.gen_range(0..sellers);
                if s != products[of].seller {
                    break s;
                }
            };
            let n = rng.gen_range(1..=3);
            let mut edits: Vec<Edit> = EDITS.choose_multiple(rng, n).copied().collect();
            edits.sort_by_key(|e| EDITS.iter().position(|x| x == e));
            let original = &products[of];
            let relisting = Product {
                id: format!("P{:06}", products.len()),
                seller,
                category: original.category,
                brand: original.brand,
                condition: original.condition,
                usd: original.usd * (0.15 * normal(rng)).exp(),
                code: original.code.clone(),
                relisting: Some(Relisting { of, edits }),
            };
            products.push(relisting);
        }
    }
    products
}

/// The words a title is made of: its adjective and colour (indexes into the
/// per-language lists, which are aligned, so a relisting can say the same in
/// another language).
#[derive(Clone, Copy)]
struct Wording {
    adjective: usize,
    color: usize,
}

fn title(product: &Product, lang: usize, w: Wording) -> String {
    let cat = &CATEGORIES[product.category];
    let adj = ADJECTIVES[lang][w.adjective];
    let color = COLORS[lang][w.color];
    let brand = cat.brands[product.brand].0;
    let noun = cat.nouns[lang];
    let code = &product.code;
    match lang {
        JA | ZH | KO => format!("{brand} {adj}{noun} {code} {color}"),
        EN => format!("{brand} {adj} {noun} {code} - {color}"),
        _ => format!("{brand} {noun} {code} {adj} {color}"),
    }
}

/// A relisting's title: the original's words in the relisting seller's language
/// (a translation when the markets' languages differ), then its edits.
fn edited(title: &str, brand: &str, code: &str, edits: &[Edit], rng: &mut ChaCha8Rng) -> String {
    let mut t = title.to_string();
    for edit in edits {
        match edit {
            Edit::CodeFormat => {
                let new = match rng.gen_range(0..3) {
                    0 => code.replace('-', ""),
                    1 => code.to_lowercase(),
                    _ => code.replace('-', " "),
                };
                t = t.replace(code, &new);
            }
            Edit::BrandSpelling => {
                let chars: Vec<char> = brand.chars().collect();
                let new = match rng.gen_range(0..3) {
                    0 => brand.to_uppercase(),
                    1 => brand.to_lowercase(),
                    _ => {
                        let mid = chars.len() / 2;
                        format!(
                            "{}-{}",
                            chars[..mid].iter().collect::<String>(),
                            chars[mid..].iter().collect::<String>()
                        )
                    }
                };
                t = t.replacen(brand, &new, 1);
            }
            Edit::ExtraWord => {
                let w = EXTRA_WORDS.choose(rng).expect("non-empty");
                t = if rng.gen_bool(0.5) {
                    format!("{w} {t}")
                } else {
                    format!("{t} {w}")
                };
            }
            Edit::Reorder | Edit::Typo | Edit::Abbreviate => {
                let mut words: Vec<String> = t
                    .split_whitespace()
                    .filter(|w| *w != "-")
                    .map(str::to_string)
                    .collect();
                // Words the edit may touch: not the code, letters only for typos
                // and abbreviations.
                let fits = |w: &str, min: usize| {
                    !code.contains(w)
                        && w.chars().count() >= min
                        && w.chars().all(char::is_alphabetic)
                };
                match edit {
                    Edit::Reorder if words.len() >= 3 => {
                        let i = rng.gen_range(1..words.len());
                        let j = (i + rng.gen_range(1..words.len())) % words.len();
                        words.swap(i, j);
                    }
                    Edit::Typo => {
                        let eligible: Vec<usize> =
                            (0..words.len()).filter(|&i| fits(&words[i], 4)).collect();
                        if let Some(&i) = eligible.choose(rng) {
                            let mut c: Vec<char> = words[i].chars().collect();
                            let at = rng.gen_range(1..c.len() - 1);
                            match rng.gen_range(0..3) {
                                0 => c.swap(at, at + 1),
                                1 => {
                                    c.remove(at);
                                }
                                _ => c.insert(at, c[at]),
                            }
                            words[i] = c.into_iter().collect();
                        }
                    }
                    Edit::Abbreviate => {
                        let eligible: Vec<usize> =
                            (0..words.len()).filter(|&i| fits(&words[i], 7)).collect();
                        if let Some(&i) = eligible.choose(rng) {
                            words[i] = format!("{}.", words[i].chars().take(4).collect::<String>());
                        }
                    }
                    _ => {}
                }
                t = words.join(" ");
            }
        }
    }
    if t == title {
        // An edit found nothing to act on (no long word in a CJK title, say): a
        // relisting still never repeats the original word for word.
        t.push_str(" Original");
    }
    t
}

fn write_products(
    dir: &Path,
    p: &Params,
    rng: &mut ChaCha8Rng,
    sellers: &[Seller],
    products: &[Product],
    image_uris: &[String],
    start: NaiveDate,
) -> Result<(String, usize)> {
    let mut out = Out::create(
        dir,
        "products",
        p.gzip,
        &[
            "product_id",
            "seller_id",
            "seller_country",
            "title",
            "description",
            "category",
            "brand",
            "condition",
            "image_uri",
            "list_price",
            "currency",
            "language",
            "created_ts",
        ],
    )?;
    let mut wordings: Vec<Wording> = Vec::with_capacity(products.len());
    for (prod, image_uri) in products.iter().zip(image_uris) {
        let seller = &sellers[prod.seller];
        let market = &MARKETS[seller.market];
        let lang = market.lang;
        let text = match &prod.relisting {
            None => {
                let w = Wording {
                    adjective: rng.gen_range(0..ADJECTIVES[lang].len()),
                    color: rng.gen_range(0..COLORS[lang].len()),
                };
                wordings.push(w);
                title(prod, lang, w)
            }
            Some(r) => {
                let w = wordings[r.of];
                wordings.push(w);
                let brand = CATEGORIES[prod.category].brands[prod.brand].0;
                edited(&title(prod, lang, w), brand, &prod.code, &r.edits, rng)
            }
        };
        let mut title_bytes = text.into_bytes();
        let cat = &CATEGORIES[prod.category];
        let mut description = format!(
            "{} {} ({}), {}.",
            cat.brands[prod.brand].0, cat.nouns[EN], cat.name, prod.condition
        );
        // Sellers sometimes type contact details into listings; ingest must scrub them.
        if rng.gen_bool(0.02) {
            description.push_str(&format!(
                " Questions? Call {} 555 0{:03} {:04} or write to seller{}@shop.example.com",
                market.phone,
                rng.gen_range(0..1000),
                rng.gen_range(0..10_000),
                prod.seller
            ));
        }
        let list_price = prod.usd * market.level * 1.15 / usd_rate(market, 0);
        let created = start - Duration::days(rng.gen_range(1..400));
        let mut list = format_price(list_price, market.currency);
        if rng.gen_bool(p.bad_fraction) {
            match rng.gen_range(0..3) {
                0 => title_bytes.extend_from_slice(b" \xff\xfe broken"),
                1 => list = "-12.00".into(),
                _ => title_bytes.clear(),
            }
        }
        out.row([
            prod.id.as_bytes(),
            seller.id.as_bytes(),
            market.country.as_bytes(),
            &title_bytes,
            description.as_bytes(),
            cat.name.as_bytes(),
            cat.brands[prod.brand].0.as_bytes(),
            prod.condition.as_bytes(),
            image_uri.as_bytes(),
            list.as_bytes(),
            market.currency.as_bytes(),
            LANG_CODES[lang].as_bytes(),
            format!("{created} 09:00:00").as_bytes(),
        ])?;
    }
    out.finish()
}

/// The labelled cut of the duplicate-listings task: about [`LABELLED`] of the
/// groups (an original with all its relistings, or a lone listing), every member
/// with its group's id — so within the cut, two listings are duplicates exactly when
/// they share a group.
fn write_duplicate_groups(
    dir: &Path,
    p: &Params,
    rng: &mut ChaCha8Rng,
    products: &[Product],
    end: NaiveDate,
) -> Result<(String, usize)> {
    let mut out = Out::create(
        dir,
        "duplicate_groups",
        p.gzip,
        &["product_id", "group_id", "labelled_ts"],
    )?;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); products.len()];
    for (i, prod) in products.iter().enumerate() {
        members[prod.relisting.as_ref().map_or(i, |r| r.of)].push(i);
    }
    for (group, listings) in members.iter().enumerate() {
        if listings.is_empty() || !rng.gen_bool(LABELLED) {
            continue;
        }
        let when = end - Duration::days(rng.gen_range(0..60));
        for &i in listings {
            out.row([
                products[i].id.as_str(),
                products[group].id.as_str(),
                &format!("{when} 15:00:00"),
            ])?;
        }
    }
    out.finish()
}

/// Zero-decimal currencies are priced in whole units.
fn format_price(value: f64, currency: &str) -> String {
    match currency {
        "JPY" | "KRW" => format!("{:.0}", value.round()),
        _ => format!("{value:.2}"),
    }
}

#[allow(clippy::too_many_arguments)]
fn write_orders(
    dir: &Path,
    p: &Params,
    rng: &mut ChaCha8Rng,
    sellers: &[Seller],
    products: &[Product],
    customers: &[Customer],
    start: NaiveDate,
) -> Result<(String, usize)> {
    let mut out = Out::create(
        dir,
        "orders",
        p.gzip,
        &[
            "order_id",
            "line_no",
            "order_ts",
            "customer_id",
            "customer_name",
            "customer_email",
            "customer_phone",
            "shipping_address",
            "product_id",
            "seller_id",
            "quantity",
            "unit_price",
            "currency",
            "buyer_country",
            "ship_country",
            "channel",
            "status",
        ],
    )?;
    // Products by seller market, so most orders buy domestically.
    let mut by_market: Vec<Vec<usize>> = vec![Vec::new(); MARKETS.len()];
    for (i, prod) in products.iter().enumerate() {
        by_market[sellers[prod.seller].market].push(i);
    }
    let mut days: Vec<i64> = (0..p.orders)
        .map(|_| {
            loop {
                let day = rng.gen_range(0..DAYS);
                let date = start + Duration::days(day);
                let season = match date.month() {
                    11 => 1.6,
                    12 => 1.9,
                    1 => 0.8,
                    6..=8 => 0.9,
                    _ => 1.0,
                };
                if rng.gen_bool(season / 1.9) {
                    break day;
                }
            }
        })
        .collect();
    days.sort_unstable();
    for (o, day) in days.into_iter().enumerate() {
        let customer = &customers[rng.gen_range(0..customers.len())];
        let buyer = &MARKETS[customer.market];
        let date = start + Duration::days(day);
        let ts = NaiveDateTime::new(
            date,
            NaiveTime::from_hms_opt(
                rng.gen_range(0..24),
                rng.gen_range(0..60),
                rng.gen_range(0..60),
            )
            .expect("valid time"),
        );
        let ship = if rng.gen_bool(0.06) {
            MARKETS[rng.gen_range(0..MARKETS.len())].country
        } else {
            buyer.country
        };
        let channel = weighted(rng, CHANNELS, |c| c.1).0;
        let status = *weighted(
            rng,
            &[
                ("completed", 0.82),
                ("shipped", 0.06),
                ("cancelled", 0.05),
                ("returned", 0.07),
            ],
            |s| s.1,
        );
        let order_id = format!("O{:08}", o + 1);
        for line in 1..=rng.gen_range(1..=3) {
            let domestic = &by_market[customer.market];
            let pi = if !domestic.is_empty() && rng.gen_bool(0.6) {
                domestic[rng.gen_range(0..domestic.len())]
            } else {
                rng.gen_range(0..products.len())
            };
            let prod = &products[pi];
            let cat = &CATEGORIES[prod.category];
            let season = if matches!(date.month(), 11 | 12) {
                1.0 - 0.08 * cat.holiday
            } else {
                1.0
            };
            let cross = sellers[prod.seller].market != customer.market;
            let usd = prod.usd
                * buyer.level
                * season
                * if cross { 1.07 } else { 1.0 }
                * (0.08 * normal(rng)).exp();
            let price = usd / usd_rate(buyer, day);
            let quantity = *weighted(rng, &[(1, 0.7), (2, 0.2), (3, 0.07), (5, 0.03)], |q| q.1);
            let mut row: Vec<Vec<u8>> = [
                order_id.clone(),
                line.to_string(),
                ts.format("%Y-%m-%d %H:%M:%S").to_string(),
                customer.id.clone(),
                customer.name.clone(),
                customer.email.clone(),
                customer.phone.clone(),
                customer.address.clone(),
                prod.id.clone(),
                sellers[prod.seller].id.clone(),
                quantity.0.to_string(),
                format_price(price, buyer.currency),
                buyer.currency.to_string(),
                buyer.country.to_string(),
                ship.to_string(),
                channel.to_string(),
                status.0.to_string(),
            ]
            .map(String::into_bytes)
            .to_vec();
            let mut duplicate = false;
            if rng.gen_bool(p.bad_fraction) {
                match rng.gen_range(0..7) {
                    0 => row[0].clear(),                                        // missing key
                    1 => row[11] = b"-19.99".to_vec(),                          // negative price
                    2 => row[11] = b"999999999".to_vec(),                       // absurd price
                    3 => row[12] = b"EUX".to_vec(),                             // unknown currency
                    4 => row[2] = b"2026-13-45 25:61:00".to_vec(), // malformed timestamp
                    5 => duplicate = true,                         // duplicated line
                    _ => row[8] = [b"P\xff".as_slice(), &row[8][1..]].concat(), // broken UTF-8
                }
            }
            out.row(&row)?;
            if duplicate {
                out.row(&row)?;
            }
        }
    }
    out.finish()
}

fn write_crawled(
    dir: &Path,
    p: &Params,
    rng: &mut ChaCha8Rng,
    products: &[Product],
    end: NaiveDate,
) -> Result<(String, usize)> {
    let mut out = Out::create(
        dir,
        "crawled_offers",
        p.gzip,
        &[
            "offer_id",
            "source",
            "product_ref",
            "title",
            "price",
            "currency",
            "country",
            "crawled_ts",
        ],
    )?;
    for i in 0..(p.orders / 4).max(40) {
        let prod = &products[rng.gen_range(0..products.len())];
        let market = &MARKETS[rng.gen_range(0..MARKETS.len())];
        let day_back = rng.gen_range(0..120);
        let day = DAYS - 1 - day_back;
        let crawled = end - Duration::days(day_back);
        let price = prod.usd * market.level * (0.12 * normal(rng)).exp() / usd_rate(market, day);
        let product_ref = if rng.gen_bool(0.7) {
            prod.id.clone()
        } else {
            String::new()
        };
        let mut price_text = format_price(price, market.currency);
        if rng.gen_bool(p.bad_fraction) {
            price_text = "0".into();
        }
        let source = CRAWL_SOURCES.choose(rng).expect("non-empty").to_string();
        // A competitor words the same product its own way.
        let wording = Wording {
            adjective: rng.gen_range(0..ADJECTIVES[market.lang].len()),
            color: rng.gen_range(0..COLORS[market.lang].len()),
        };
        out.row([
            format!("X{i:07}"),
            source,
            product_ref,
            title(prod, market.lang, wording),
            price_text,
            market.currency.to_string(),
            market.country.to_string(),
            format!(
                "{crawled} {:02}:{:02}:00",
                rng.gen_range(0..24),
                rng.gen_range(0..60)
            ),
        ])?;
    }
    out.finish()
}

/// Daily rates on weekdays only, as central banks publish them.
fn write_fx(dir: &Path, p: &Params, start: NaiveDate, end: NaiveDate) -> Result<(String, usize)> {
    let mut out = Out::create(dir, "fx_rates", p.gzip, &["date", "currency", "rate"])?;
    let first = start - Duration::days(7);
    let mut seen: Vec<&str> = Vec::new();
    let markets: Vec<&Market> = MARKETS
        .iter()
        .filter(|m| {
            let new = !seen.contains(&m.currency);
            seen.push(m.currency);
            new && m.currency != "USD"
        })
        .collect();
    let mut date = first;
    while date <= end {
        if date.weekday().number_from_monday() <= 5 {
            for m in &markets {
                let day = (date - start).num_days();
                out.row([
                    date.to_string(),
                    m.currency.to_string(),
                    format!("{:.6}", usd_rate(m, day)),
                ])?;
            }
        }
        date += Duration::days(1);
    }
    out.finish()
}

fn write_deletions(
    dir: &Path,
    p: &Params,
    rng: &mut ChaCha8Rng,
    customers: &[Customer],
    end: NaiveDate,
) -> Result<(String, usize)> {
    let mut out = Out::create(
        dir,
        "deletion_requests",
        p.gzip,
        &["customer_id", "requested_ts"],
    )?;
    let n = (customers.len() / 100).max(1);
    let mut chosen: Vec<usize> = (0..customers.len()).collect();
    chosen.shuffle(rng);
    for &i in chosen.iter().take(n) {
        let when = end - Duration::days(rng.gen_range(0..30));
        out.row([customers[i].id.clone(), format!("{when} 12:00:00")])?;
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let p = Params {
            orders: 300,
            seed: 7,
            bad_fraction: 0.05,
            gzip: false,
            photos: 0.3,
        };
        generate(a.path(), &p).unwrap();
        generate(b.path(), &p).unwrap();
        for f in [
            "orders.csv",
            "products.csv",
            "duplicate_groups.csv",
            "crawled_offers.csv",
            "fx_rates.csv",
            "deletion_requests.csv",
        ] {
            assert_eq!(
                std::fs::read(a.path().join(f)).unwrap(),
                std::fs::read(b.path().join(f)).unwrap(),
                "{f}"
            );
        }
        let photos = |d: &Path| {
            let mut names: Vec<_> = std::fs::read_dir(d.join(PHOTO_FOLDER))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        };
        assert!(!photos(a.path()).is_empty());
        assert_eq!(photos(a.path()), photos(b.path()));
        for name in photos(a.path()) {
            let f = Path::new(PHOTO_FOLDER).join(name);
            assert_eq!(
                std::fs::read(a.path().join(&f)).unwrap(),
                std::fs::read(b.path().join(&f)).unwrap()
            );
        }
        let c = tempfile::tempdir().unwrap();
        generate(c.path(), &Params { seed: 8, ..p }).unwrap();
        assert_ne!(
            std::fs::read(a.path().join("orders.csv")).unwrap(),
            std::fs::read(c.path().join("orders.csv")).unwrap()
        );
    }

    #[test]
    fn photos_come_with_the_defects_of_real_uploads() {
        let dir = tempfile::tempdir().unwrap();
        let p = Params {
            orders: 3000,
            seed: 5,
            bad_fraction: 0.1,
            gzip: false,
            photos: 0.5,
        };
        generate(dir.path(), &p).unwrap();
        let mut r = csv::Reader::from_path(dir.path().join("products.csv")).unwrap();
        // (Byte records: bad rows carry broken UTF-8 in their titles.)
        let uris: Vec<String> = r
            .byte_records()
            .map(|rec| String::from_utf8_lossy(&rec.unwrap()[8]).into_owned())
            .collect();
        let with: Vec<&String> = uris.iter().filter(|u| !u.is_empty()).collect();
        assert!(
            with.len() > uris.len() / 3 && with.len() < uris.len(),
            "{}",
            with.len()
        );
        assert!(with.iter().any(|u| u.starts_with("../")));
        assert!(with.iter().any(|u| u.contains("/missing-")));
        let (mut good, mut broken, mut tiny) = (0, 0, 0);
        for u in with
            .iter()
            .filter(|u| u.starts_with("images/") && !u.contains("missing-"))
        {
            let bytes = std::fs::read(dir.path().join(u)).unwrap();
            match image::load_from_memory(&bytes) {
                Ok(img) if img.width() < 64 => tiny += 1,
                Ok(img) => {
                    assert!(img.width() >= 64 && img.height() >= 64, "{u}");
                    good += 1
                }
                Err(_) => broken += 1,
            }
        }
        assert!(good > 5 * (broken + tiny), "{good} {broken} {tiny}");
        assert!(broken > 0 && tiny > 0, "{broken} {tiny}");
    }

    #[test]
    fn relistings_are_labelled_edited_copies_by_other_sellers() {
        let dir = tempfile::tempdir().unwrap();
        let p = Params {
            orders: 4000,
            seed: 3,
            bad_fraction: 0.0,
            gzip: false,
            photos: 0.0,
        };
        generate(dir.path(), &p).unwrap();
        let mut listings = std::collections::HashMap::new();
        let mut r = csv::Reader::from_path(dir.path().join("products.csv")).unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            listings.insert(rec[0].to_string(), (rec[1].to_string(), rec[3].to_string()));
        }
        let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        let mut r = csv::Reader::from_path(dir.path().join("duplicate_groups.csv")).unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            groups
                .entry(rec[1].to_string())
                .or_default()
                .push(rec[0].to_string());
        }
        let labelled: usize = groups.values().map(Vec::len).sum();
        assert!(
            labelled > listings.len() / 3 && labelled < listings.len() * 2 / 3,
            "about half labelled: {labelled}"
        );
        let with_copies: Vec<_> = groups.iter().filter(|(_, m)| m.len() > 1).collect();
        assert!(
            with_copies.len() > 20,
            "{} groups with relistings",
            with_copies.len()
        );
        let (mut edited, mut copies) = (0, 0);
        for (group, members) in with_copies {
            let (seller, title) = &listings[group];
            // The model code's digits survive every edit and translation.
            let digits: String = title
                .split(|c: char| !c.is_ascii_digit())
                .find(|run| run.len() == 4)
                .unwrap()
                .to_string();
            for m in members.iter().filter(|m| *m != group) {
                let (s, t) = &listings[m];
                assert_ne!(s, seller, "{m} relists {group} from another seller");
                assert!(t.contains(&digits), "{t} keeps the code of {title}");
                copies += 1;
                edited += usize::from(t != title);
            }
        }
        assert_eq!(
            edited, copies,
            "every relisting's title is edited or translated"
        );
    }
}
