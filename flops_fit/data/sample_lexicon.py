"""Word lists and story templates for the synthetic offline sample (``sample.py``).

Plain data, no logic. Lists are space-separated strings (``_w``); multi-word entries use
``_`` for spaces. Changing anything here changes the corpus: bump ``SAMPLE_VERSION``.
"""

from __future__ import annotations


def _w(s: str) -> tuple[str, ...]:
    return tuple(x.replace("_", " ") for x in s.split())


GIRLS = _w("""Lily Mia Emma Ava Zoe Lucy Ella Ruby Rosie Daisy Amy Anna Sara Nora Ivy Hazel Chloe Grace
Molly Poppy Alice Clara Sophie Maya Luna Stella Julia Jenny Kate Hannah Bella Olivia Isla Freya Leah Tessa
Fiona Greta Holly Iris Jade Kira Lena Mara Nina Pia Rita Sadie Tara Una Vera Wendy Yara Zara Abby Beth
Cora Dora Eva Faye Gemma Heidi Ingrid Josie Kitty Lola Mina Nell Opal Penny Quinn Rose Sally Tilly Violet
Willow Amber Bonnie Cleo Elsie Flora Gwen Hope June Lacey Mabel Nadia Olive Pearl Rhea Sunny Thea""")
BOYS = _w("""Tom Ben Max Sam Leo Jack Finn Noah Liam Owen Jake Luke Adam Eli Theo Oscar Henry Toby Ollie
Harry Charlie Alfie Arlo Bruno Caleb Dan Ethan Felix George Hugo Ian Jonah Kai Levi Milo Ned Otto Pete Ray
Rex Seth Teddy Vince Wes Zack Abe Bill Carl Dev Ezra Fred Gus Hank Ira Joe Kit Lou Mark Nico Omar Paul Reed
Simon Tim Umar Vic Will Yusuf Zeke Andy Bobby Cody Drew Eddie Frank Gabe Jasper Kevin Lars Matt Nate Oren
Rafi Scott Trey Ty Walt Zane Barry Ronan""")
SURNAMES = _w("""Brook Hill Stone Wood Green Fox Bell Reed Lake Moss Field Park Rose Snow Gray Hunt Ford
Lane Marsh Dale Frost Cole Wells Banks Shaw Day Hart Knox Page West North Cross Birch Oak Ash Pine Vale
Cloud Rivers Meadows Berry Carter Baker Fisher Miller Porter Tanner Turner Webb Young King Price Long Moon
Sparks Summers Winter Spring Bright Little Sweet Gold Silver Penny Button Honey Maple Willow Cotton Parker
Mills Cooper Hayes Blake Quill Finch Robin Crane Swift Holt Dunn Flint Clay Rock Bloom""")
# (town, landmark): each town has one fixed landmark, an easy fact small models can learn.
TOWNS = tuple(tuple(x.split(":")) for x in """Pinewood:the_old_mill Maple_Hill:the_big_lake
Sunnyvale:the_clock_tower Brookfield:the_red_bridge Oakdale:the_tall_lighthouse Willow_Creek:the_stone_well
Riverside:the_wooden_pier Cedar_Falls:the_loud_waterfall Meadowbrook:the_windmill Fox_Hollow:the_quiet_forest
Honeyvale:the_bee_farm Starfield:the_little_observatory Rosewood:the_rose_garden Bluebell:the_blue_pond
Hollyford:the_castle_ruins Greenport:the_busy_harbor Ashby:the_train_station Elmstead:the_giant_oak
Foxglove:the_flower_market Kettle_Bay:the_sandy_beach Puddleby:the_duck_pond Thistledown:the_hilltop_fort
Copperfield:the_copper_statue Larkspur:the_music_hall Mossley:the_mossy_cave Bramble_End:the_berry_farm
Cloverdale:the_clover_fields Dewberry:the_toy_shop Fernhill:the_fern_valley Goldcrest:the_golden_gate
Hazelwood:the_nut_orchard Juniper:the_pine_forest Lavender_Lane:the_purple_fields Millbrook:the_water_wheel
Northgate:the_snowy_mountain Pebble_Cove:the_rocky_shore Quarry_Hill:the_stone_quarry Robin_Wood:the_bird_tower
Silverlake:the_silver_lake Tumbleton:the_old_carousel""".split())
TOWNS = tuple((t.replace("_", " "), l.replace("_", " ")) for t, l in TOWNS)
# (kind, sound verb, happy action): pet kind determines its sound and habit.
PETS = tuple(tuple(x.replace("_", " ") for x in p.split(":")) for p in """dog:barked:wagged_its_tail
cat:meowed:purred_softly puppy:yipped:jumped_up_and_down kitten:mewed:rolled_on_its_back
rabbit:squeaked:hopped_in_a_circle hamster:squeaked:ran_in_its_wheel parrot:squawked:flapped_its_wings
turtle:hissed_softly:stretched_its_neck goldfish:blew_bubbles:swam_in_a_circle pony:neighed:stamped_its_hooves
duck:quacked:flapped_its_wings goat:bleated:kicked_its_legs guinea_pig:squeaked:wiggled_its_nose
mouse:squeaked:twitched_its_whiskers lizard:hissed:flicked_its_tail""".split())
PET_NAMES = _w("""Biscuit Buddy Max Coco Pepper Ginger Shadow Patch Muffin Oreo Peanut Teddy Rusty Lucky
Sunny Bubbles Whiskers Fluffy Snowball Sparky Pickles Noodle Waffles Pumpkin Cookie Mochi Bean Button
Daisy Toffee Ziggy Bingo Scout Ranger Pip Squeak Nibbles Tiny Goldie Bandit Cinnamon Jelly Marbles Pudding
Sprinkles Tango Zippy Chester Dotty Fudge Hazel Jasper Kiwi Lulu Maple Nugget Olive Pebbles Rocket Socks
Taffy Velvet Wiggles Acorn Blueberry Clover Domino Echo Fig Gizmo Honey Inky Juniper Kipper Lemon Mango
Nutmeg Pixie Quincy Rolo Sage Truffle Winnie Yoyo Zuzu Bolt Comet Dusty Flash Mittens Puff Rascal Smudge
Tinker Toast Banjo Chip Dash Frodo Gus Hopper Igloo Jinx Pogo Ripple Skipper Sugar Twix""")
COLORS = _w("red blue green yellow orange purple pink brown black white gray gold silver teal violet sky_blue")
FOODS = _w("""pancakes apple_pie pizza spaghetti carrot_soup strawberries cherry_cake banana_bread muffins
cookies waffles honey_toast grapes peaches mango pears noodles rice_pudding cheese_sandwiches tomato_soup
blueberry_pie corn_on_the_cob mashed_potatoes fish_sticks plum_jam lemon_cake popcorn oatmeal fruit_salad
chocolate_milk pumpkin_pie apple_slices melon carrot_cake vegetable_stew dumplings tacos berry_muffins
peanut_butter_toast cinnamon_rolls""")
PLACES = _w("""the_park the_beach the_library the_zoo the_garden the_farm the_forest the_playground the_river
the_market the_bakery the_hill the_meadow the_pond the_museum the_orchard the_treehouse the_lake
the_swimming_pool the_toy_shop the_school_yard the_campsite the_flower_field the_bridge the_train_yard""")
TOYS = _w("""teddy_bear red_ball toy_car kite rag_doll toy_boat yo-yo wooden_train jump_rope toy_robot
spinning_top puppet drum little_truck stuffed_bunny puzzle box_of_crayons marble_bag toy_plane set_of_blocks
toy_dinosaur paper_crown music_box toy_horse bubble_wand""")
ACTIVITIES = _w("""painting swimming dancing singing drawing reading climbing_trees building_with_blocks
riding_a_bike flying_kites baking playing_the_drum jumping_rope counting_stars collecting_shells
picking_flowers playing_hide_and_seek making_sandcastles skipping_stones telling_jokes""")
SKILLS = _w("""ride_a_bike swim tie_shoes whistle skip_rope fly_a_kite climb_a_tree bake_bread
play_the_flute catch_a_ball do_a_cartwheel read_a_big_book ice_skate juggle_three_balls""")
ITEMS = _w("""hat scarf shoe mitten key book shell button spoon cup map coin ribbon sock boot bell
feather marble crayon lunch_box backpack umbrella flashlight whistle blanket basket pencil necklace
bracelet glove badge ring letter ticket compass lantern bottle""")
SPOTS = _w("""under_the_bed behind_the_sofa in_the_toy_box under_the_table in_the_garden behind_the_door
in_the_kitchen under_a_pillow in_the_closet near_the_window in_the_bathtub under_the_stairs in_the_car
behind_a_bush in_the_shed under_a_leaf by_the_fence in_the_laundry_basket on_the_shelf in_a_drawer
next_to_the_gate under_the_swing in_the_sandbox by_the_flower_pot""")
WILD = _w("""bird squirrel frog butterfly hedgehog owl duckling snail bunny fawn ladybug mole chick
turtle kitten puppy sparrow robin beetle caterpillar""")
ADJS = _w("""big small shiny old new soft tiny bright fluffy round smooth warm cold heavy light striped
spotted sparkly muddy wet dusty funny pretty strange lovely""")
WEATHER = _w("""sunny rainy windy snowy cloudy foggy warm chilly bright quiet""")
TIMES = _w("morning afternoon evening day")
GRANS = _w("""Grandma_Rose Grandma_June Grandma_Pearl Grandma_Edna Grandma_Lou Grandma_Bea Grandpa_Joe
Grandpa_Sam Grandpa_Ted Grandpa_Walt Grandpa_Hal Grandpa_Gus""")
RIDES = _w("""the_train the_bus the_car a_boat the_ferry""")
FEELS = _w("happy glad proud excited calm thankful cheerful")
SADS = _w("sad worried upset scared nervous grumpy")

# Story templates. Placeholders: protagonist {name} {full} {He} {he} {him} {his} {His} {kid}
# ({kid}=boy/girl) {age} {town} {landmark} {pet} {petkind} {petsound} {petact} {color} {food}
# {place} {toy} {act}; friend {fr} {frHe} {frhe} {frhim} {frhis} {frcolor} {frfood} {frpet};
# sibling {sib} {sibrel}; {gran} {grantown}; per story {item} {adj} {spot1} {spot2} {spot3}
# {wild} {weather} {time} {skill} {ride} {feel} {sad} {parent}.
# A template list is a set of alternatives; "|" separates alternative sentences.
INTRO_NAME = """Once upon a time, there was a little {kid} named {full}.|Once there was a {kid} called {full}.|There once was a {kid} named {full}, who was {age} years old.|Long ago, there lived a {kid} named {full}."""
INTRO_FACTS = (
    "{name} lived in {town}, near {landmark}.|{He} lived in the town of {town}, not far from {landmark}.",
    "{name} had a {petkind} named {pet}.|{He} had a pet {petkind} called {pet}.|{His} best pet was a {petkind} named {pet}.",
    "{His} favorite color was {color}.|{name} loved the color {color}.",
    "{name} loved to eat {food}.|{His} favorite food was {food}.",
    "{His} favorite place was {place}.|{name} liked to go to {place} more than anywhere else.",
    "{His} best friend was {fr}.|{name} played with {his} best friend, {fr}, every day.",
    "{name} had a {sibrel} named {sib}.|{He} lived with {his} {sibrel}, {sib}.",
    "{name} loved {act}.|More than anything, {name} liked {act}.",
    "{name}'s birthday was in {month}.|{name} was born in {month}.",
    "{name} lived in a {house} house on {street}.|{His} family had a {house} house on {street}.",
    "{name} liked to watch the {animal}s at {place}.|{His} favorite animal was the {animal}.",
    "{fr} had a {frpetkind} named {frpet}.|{fr} lived nearby with a {frpetkind} called {frpet}.",
    "Whenever something surprised {him}, {name} would say, \"{phrase}\"|{name} always said \"{phrase}\" when {he} was surprised.",
    "{He} had a {toy} that {he} took everywhere.|{His} favorite toy was a {toy}.",
)
OPEN_SCENE = """One {weather} {time}, {name} and {pet} went to {place}.|One {weather} {time}, {name} woke up early and looked out the window.|It was a {weather} {time} in {town}.|One day, {name} was playing with {his} {toy} at home."""
PLOTS = {
    "lost": (
        "{name} wanted to play with {his} {toy}, but it was gone!|{name} looked for {his} {toy}, but {he} could not find it.",
        "\"Oh no! Where is my {toy}?\" {name} said.|\"My {toy} is lost!\" {name} cried.",
        "{He} looked {spot1}, but it was not there.|First, {he} looked {spot1}. No {toy}.",
        "Then {he} looked {spot2}. It was not there either.|{He} checked {spot2}, but it was empty.",
        "{name} felt {sad}. {He} called {his} friend {fr}.|{name} went to find {fr} and asked for help.",
        "\"Don't worry, {name}. I will help you,\" said {fr}.|\"Let's look together,\" {fr} said with a smile.",
        "{pet} the {petkind} {petsound} and ran {spot3}.|Just then, {pet} {petsound} loudly from {spot3}.",
        "There was the {toy}! {pet} had found it.|{name} looked {spot3}, and there was {his} {toy}!",
        "{name} hugged {pet} and thanked {fr}.|\"Thank you, {pet}! Thank you, {fr}!\" said {name}.",
        "{name} learned that friends can help when things go wrong.|From that day on, {name} always put {his} {toy} away.",
    ),
    "share": (
        "{fr} came over to play.|{name} met {fr} at {place}.",
        "{fr} saw {name}'s {toy} and wanted to play with it.|\"Can I play with your {toy}?\" asked {fr}.",
        "\"No, it is mine!\" said {name}.|But {name} held the {toy} tight and said, \"No.\"",
        "{fr} felt {sad} and sat down alone.|{frHe} looked at the ground and did not say a word.",
        "{name} saw that {fr} was {sad}. {He} did not feel good inside.|{name} thought about how {fr} felt.",
        "{name} walked over and gave {fr} the {toy}.|Then {name} said, \"You can have a turn, {fr}.\"",
        "{fr} smiled. \"Thank you, {name}!\"|{frHe} smiled a big smile.",
        "They played with the {toy} together all {time} long.|Together they played, and even {pet} joined in.",
        "{name} learned that sharing makes everyone {feel}.|Sharing made the game more fun for both of them.",
    ),
    "bake": (
        "{name} wanted to bake {food} for {gran}.|{name} and {his} {sibrel} {sib} decided to make {food} for {gran}.",
        "{gran} lived in {grantown}, and {name} wanted to bring a treat.|\"Let's surprise {gran}!\" said {sib}.",
        "They got a bowl, a spoon, and a big {adj} bag of flour.|{parent} helped them find a bowl and a spoon.",
        "But the bag fell, and flour went everywhere!|Oops! {name} dropped the eggs on the floor.",
        "{pet} ran through the mess and {petsound}.|{sib} laughed, and {name} laughed too.",
        "They cleaned up and tried again, slowly and carefully.|\"Let's try again,\" said {parent}.",
        "Soon the {food} smelled sweet and warm.|At last, the {food} was ready.",
        "They took {ride} to {grantown} to see {gran}.|{gran} came to visit from {grantown}.",
        "\"This is my favorite!\" said {gran}, and gave them a big hug.|{gran} ate the {food} with a big smile.",
        "{name} learned that when things go wrong, you can try again.|{name} felt {feel} all day.",
    ),
    "storm": (
        "That night, a big storm came to {town}.|Dark clouds rolled over {landmark}, and rain began to fall.",
        "Thunder went boom! {name} was {sad}.|Boom! The thunder was so loud that {name} hid under {his} blanket.",
        "{pet} the {petkind} jumped onto the bed.|{pet} came close and {petact}.",
        "\"I am scared,\" {name} said to {parent}.|{name} called for {parent}.",
        "{parent} sat down and said, \"The storm is loud, but we are safe inside.\"|\"Thunder is just noise,\" said {parent}.",
        "{name} held {his} {toy} and took a deep breath.|{name} counted slowly, and the thunder got quieter.",
        "In the morning, the sun came out over {landmark}.|By morning, the storm was gone.",
        "{name} went outside and saw a rainbow with {color} in it.|There was a big rainbow, and {name} found {his} favorite color, {color}.",
        "{name} learned that being brave means feeling scared and staying calm.|{name} felt {feel} and brave.",
    ),
    "skill": (
        "{name} wanted to learn to {skill}.|All {his} friends could {skill}, but {name} could not.",
        "{He} tried, but it was hard.|The first time, {he} fell down.",
        "\"I can't do it!\" {name} said.|{name} felt {sad} and wanted to stop.",
        "{fr} said, \"Keep trying, {name}. I fell a lot too.\"|{sib} said, \"Try a little every day.\"",
        "So {name} practiced every day at {place}.|Every day after lunch, {name} tried again.",
        "{pet} watched and {petsound} to cheer {him} on.|{pet} sat close and {petact}.",
        "One day, {name} did it! {He} could {skill}!|At last, {name} could {skill} all by {him}self.",
        "{name} was so {feel}.|\"I did it!\" shouted {name}.",
        "{name} learned that practice helps you grow.|{He} learned that you should never give up.",
    ),
    "animal": (
        "At {place}, {name} found a little {wild}.|On the way to {place}, {name} heard a tiny sound. It was a {wild}.",
        "The {wild} had a hurt leg and could not move.|The little {wild} looked cold and {sad}.",
        "\"Poor little {wild},\" said {name}.|\"We have to help it,\" {name} said to {pet}.",
        "{name} put the {wild} in a soft {color} box.|{He} wrapped it gently in {his} {color} scarf.",
        "{He} brought it home and showed {parent}.|{parent} helped {name} give it water and food.",
        "Every day, {name} took care of the {wild}.|{pet} watched the {wild} and did not bother it.",
        "Soon the {wild} was strong again.|After a week, the {wild} could move again.",
        "{name} took it back to {place} and let it go.|They let it go near {landmark}.",
        "\"Goodbye, little {wild}!\" said {name}.|The {wild} looked back one last time.",
        "{name} learned that being kind to animals is important.|{name} felt {feel} because {he} had helped.",
    ),
    "contest": (
        "There was a painting contest at {landmark} in {town}.|Everyone in {town} was going to the big fair at {landmark}.",
        "{name} wanted to paint a picture of {pet}.|{name} decided to paint {pet} the {petkind}.",
        "{He} used lots of {color}, {his} favorite color.|{His} picture had a big {color} sun.",
        "{fr} painted a picture too. {frHe} used {frcolor}.|{fr} painted {frpet} with lots of {frcolor}.",
        "At the fair, {name} felt {sad}. What if nobody liked {his} picture?|{name} was nervous.",
        "The judge looked at every picture for a long time.|People looked at the pictures and smiled.",
        "{fr} won a prize, and {name} clapped for {frhim}.|{name} won a ribbon!",
        "\"Your picture is wonderful,\" said {fr}.|\"I love your {petkind},\" the judge said.",
        "{name} learned that doing your best is what matters.|{name} and {fr} were {feel} together.",
    ),
    "garden": (
        "{name} found some {color} flower seeds.|{parent} gave {name} a small bag of seeds.",
        "{He} dug a hole in the garden and planted them.|{name} planted the seeds by the fence.",
        "Every day, {he} gave them water.|Every {time}, {name} and {pet} watered the seeds.",
        "But nothing grew. {name} felt {sad}.|Days went by, and the dirt stayed brown.",
        "\"Be patient,\" said {parent}. \"Good things take time.\"|{sib} said, \"Wait a little more.\"",
        "Then one {weather} {time}, {name} saw a tiny green leaf!|One day, a small sprout came up.",
        "Soon the garden was full of {color} flowers.|The flowers grew tall and {color}.",
        "{name} picked one for {fr}, and one for {gran}.|{He} gave a flower to {fr}, whose favorite color was {frcolor}.",
        "{name} learned that patience helps good things grow.|{name} felt {feel} every time {he} saw the flowers.",
    ),
    "birthday": (
        "It was {fr}'s birthday soon.|Tomorrow was {fr}'s birthday!",
        "{name} wanted to give {frhim} a special gift.|{name} thought hard about a gift for {fr}.",
        "{name} knew that {fr} loved the color {frcolor} and ate {frfood} every day.|{fr} loved {frfood} and the color {frcolor}.",
        "So {name} made a card with {frcolor} paper.|{He} drew a {frcolor} heart on a card.",
        "{He} also brought {frfood} in a {adj} basket.|{parent} helped {name} make {frfood}.",
        "At the party, {fr} opened the gift.|{fr} and {frpet} came to the door.",
        "\"You remembered {frfood} and {frcolor}! You know me so well,\" said {fr}.|{fr} jumped up and down. \"I love it!\"",
        "They ate cake and played with {pet} and {frpet}.|Everyone sang, and {frpet} ran in circles.",
        "{name} learned that the best gifts come from the heart.|{name} felt {feel}, because {fr} was happy.",
    ),
    "trip": (
        "{name} and {his} {sibrel} {sib} went to visit {gran} in {grantown}.|{parent} said they would visit {gran} in {grantown}.",
        "{name} packed a {adj} bag with {his} {toy} and a {item}.|{name} put {his} {toy} in {his} bag.",
        "They rode {ride} all the way from {town}.|The trip on {ride} was long.",
        "On the way, {name} saw a {wild} and some {adj} clouds.|{sib} fell asleep, but {name} looked out the window.",
        "But when they got there, {name}'s {item} was gone!|Then {name} saw that {he} had left the {item} behind.",
        "{name} felt {sad}.|\"Oh no, my {item}!\" said {name}.",
        "{gran} smiled and said, \"I have one just like it.\"|{gran} gave {name} a new {item}.",
        "They ate {food} at {gran}'s table, and {pet} {petsound}.|{gran} made {food}, {name}'s favorite food.",
        "{name} learned that home is wherever your family is.|It was the best trip ever.",
    ),
    "quarrel": (
        "{name} and {sib} both wanted the last of the {food}.|{name} and {his} {sibrel} {sib} both wanted to play with the {item}.",
        "\"It's mine!\" said {name}. \"No, it's mine!\" said {sib}.|They pulled and pulled.",
        "They began to shout, and {pet} hid {spot1}.|The {item} fell and broke.",
        "{parent} came in. \"What is going on?\"|{parent} heard the noise and came to see.",
        "{name} and {sib} both looked {sad}.|Nobody said anything for a long time.",
        "\"I am sorry, {sib},\" said {name}.|Then {name} said, \"You can have it, {sib}.\"",
        "\"I am sorry too,\" said {sib}. \"Let's share it.\"|{sib} gave {name} a hug.",
        "They split it in two, and {pet} came out to play.|They fixed it together, and everyone laughed.",
        "{name} learned that saying sorry makes things better.|From then on, {name} and {sib} took turns.",
    ),
    "picnic": (
        "{name} and {fr} had a picnic at {place}.|{name} packed a picnic and went to {place} with {fr}.",
        "{name} brought {food}, and {fr} brought {frfood}.|In the basket was {food} for {name} and {frfood} for {fr}.",
        "They sat on a {color} blanket under a tree.|{pet} and {frpet} played in the grass.",
        "Then some ants came and marched to the food!|Then the wind blew their napkins away.",
        "\"Oh no!\" said {fr}.|{name} and {fr} jumped up.",
        "{name} had an idea. {He} moved the blanket to a {adj} rock.|They ran and caught everything, laughing.",
        "Then they ate all the {food} and the {frfood}.|They shared their food and watched the clouds.",
        "{name} learned that a problem can turn into fun.|It was a {feel} day at {place}.",
    ),
}
CLOSING = (
    "That night, {name} ate {food} for dinner.|At dinner, they had {food}, and {name} smiled.",
    "{pet} curled up next to {name}.|Before bed, {name} gave {pet} a hug.|{pet} the {petkind} {petact}.",
    "{name} fell asleep in {town}, dreaming of {place}.|The end.",
)
MONTHS = _w("January February March April May June July August September October November December")
# Each child's fixed catchphrase (world knowledge that dialogue reuses).
PHRASES = tuple(x.strip() for x in """Oh my stars!|Holy moly!|Fiddlesticks!|Goodness gracious!|Oh, bother!
|Jumping jellybeans!|Wowee!|Great big puddles!|Oh, fuzzy socks!|Hooray for me!|Well, I never!|Oh, crumbs!
|Yikes and stripes!|Sweet pickles!|Leaping lizards!|Buttons and bows!|Oh, rats!|Hot potatoes!
|Galloping goats!|Thundering turnips!|Good grief!|Oh, my whiskers!|Shiver me timbers!|Oh, snap!
|Cheese and crackers!|Bouncing bunnies!|Oh, pickles!|Wiggly worms!|Golly gee!|Oh, my hat!""".split("|"))
# Generic sentences dropped between plot beats: general English, weakly tied to context.
FILLERS = """{pet} {petact}.|{pet} the {petkind} {petsound} and ran around.|Outside, the wind blew softly.
|Birds sang in the trees near {landmark}.|A {wild} ran past the window.|{name} hummed a little song.
|{name} thought about {his} {toy} for a moment.|The sun was warm on {his} face.|It was very quiet for a while.
|{name} took a deep breath.|Far away, a bell rang in {town}.|{parent} smiled from the kitchen.
|A {adj} cloud floated by.|{name} scratched {his} head and thought.|{pet} looked up at {name} with big eyes.
|The clock went tick, tock, tick, tock.|{name} wiped {his} nose with {his} sleeve.|A little breeze made the leaves dance.
|{name} wondered what {fr} was doing.|"{phrase}" said {name}.|Somewhere, a door went creak.
|{name} tapped {his} foot and waited.|The smell of {food} came from the kitchen.|{name} counted to ten.
|A {wild} watched from a {adj} branch.|{name} gave {pet} a little pat.|Everything looked {adj} and new.
|{name} felt a little {feel}.|"Hmm," said {name}, "what should I do?"|There was a {adj} {item} on the floor.
|The {weather} day went on.|{pet} sniffed the air.|{name} skipped a few steps.|A puddle shone like a mirror.
|{name} sat down on the {color} rug.|{name} whispered to {pet}, "Stay close."|The grass was soft and green.
|Someone was singing down the street.|{name} laughed at nothing at all.|{His} tummy made a funny noise."""
CONNECTORS = _w("Then, After_that, Soon, Suddenly, Next, Later, Just_then, Slowly, After_a_while, Before_long,")
STREETS = _w("""Apple_Street Birch_Road Cherry_Lane Daisy_Road Elm_Street Fern_Lane Garden_Road
Hill_Street Ivy_Lane Juniper_Road Kite_Street Lilac_Lane Mill_Road Nutmeg_Street Orchard_Lane Poppy_Road
Quail_Street River_Road Sunflower_Lane Tulip_Street Violet_Road Walnut_Street Yew_Lane Acorn_Road
Bluebird_Lane Clover_Street Dove_Road Ember_Lane Fox_Street Grove_Road""")
